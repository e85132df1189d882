/**
 * The peer protocol (docs/peer-protocol.md): frames, connections, the server
 * (`peer-serve`), the daemon's links to its peers, and the transports.
 */
export { ConnectionClosedError, PeerConnection, RemoteError } from './connection.js';
export { DIGEST_BYTES, digestBlocks, openDeviceView, syncSocketPath, type DeviceView, type ViewKind } from './device_view.js';
export { MAX_PAYLOAD_BYTES, MessageType, ProtocolError, PROTOCOL_VERSION, type Frame } from './frames.js';
export { PeerLink, type KnownEntry } from './peer_link.js';
export { PeerManager } from './peer_manager.js';
export { PeerServer } from './server.js';
export { pipeTransportFactory, type PipeTransportOptions } from './pipe_transport.js';
export type { PeerAddress, PeerTransport, TransportFactory } from './transport.js';
