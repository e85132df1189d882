/**
 * NbdOptionSession: the client side of the fixed newstyle handshake, one option at a time.
 * NbdClient uses it to reach the transmission phase; tests and tools use it directly to
 * list exports, ask for export info or abort.
 *
 *   const session = await NbdOptionSession.open(socket);
 *   const names = await session.list();               // ['r1']
 *   const info = await session.info('r1');            // { sizeBytes, transmissionFlags, blockSize }
 *   await session.abort();
 */
import type { Duplex } from 'node:stream';

import { StreamReader } from './_stream_reader.js';
import { NbdOptionError, NbdProtocolError } from './errors.js';
import {
  GREETING_BYTES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT,
  NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_REP_ACK,
  NBD_REP_INFO, NBD_REP_SERVER, OPTION_REPLY_HEADER_BYTES, EXPORT_NAME_PAD_BYTES, MAX_OPTION_BYTES,
  decodeExportNameReply, decodeGreeting, decodeInfo, decodeOptionReplyHeader, decodeServerReply,
  encodeClientFlags, encodeGoRequest, encodeOption, isErrorReply, optionName, replyName,
} from './protocol.js';
import type { NbdBlockSize, NbdExportInfo, NbdOptionReply } from './types.js';

export class NbdOptionSession {
  private constructor(
    private readonly stream: Duplex,
    private readonly reader: StreamReader,
    /** Handshake flags the server sent. */
    readonly handshakeFlags: number,
    /** True if both sides agreed to drop the 124 zero bytes after NBD_OPT_EXPORT_NAME. */
    readonly noZeroes: boolean,
  ) {}

  /** Reads the greeting and answers with the client flags (FIXED_NEWSTYLE, and NO_ZEROES if offered). */
  static async open(stream: Duplex): Promise<NbdOptionSession> {
    const reader = new StreamReader(stream, 'nbd handshake');
    const flags = decodeGreeting(await reader.read(GREETING_BYTES));
    if ((flags & NBD_FLAG_FIXED_NEWSTYLE) === 0) {
      reader.detach();
      throw new NbdProtocolError(`server handshake flags 0x${flags.toString(16)} lack FIXED_NEWSTYLE`, 'unsupported', flags);
    }
    const noZeroes = (flags & NBD_FLAG_NO_ZEROES) !== 0;
    stream.write(encodeClientFlags(NBD_FLAG_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_NO_ZEROES : 0)));
    return new NbdOptionSession(stream, reader, flags, noZeroes);
  }

  /** Sends one option as is. */
  send(option: number, data?: Buffer): void {
    this.stream.write(encodeOption(option, data));
  }

  /** Reads one option reply. */
  async readReply(): Promise<NbdOptionReply> {
    const header = await this.reader.read(OPTION_REPLY_HEADER_BYTES);
    const { option, type, length } = decodeOptionReplyHeader(header);
    if (length > MAX_OPTION_BYTES) {
      throw new NbdProtocolError(`${replyName(type)} of ${length} bytes, limit ${MAX_OPTION_BYTES}`, 'bad-length', length);
    }
    return { option, type, data: await this.reader.read(length) };
  }

  /** The export names the server lists (NBD_OPT_LIST). */
  async list(): Promise<string[]> {
    this.send(NBD_OPT_LIST);
    const names: string[] = [];
    for (;;) {
      const reply = await this.expectReply(NBD_OPT_LIST);
      if (reply.type === NBD_REP_ACK) return names;
      if (reply.type !== NBD_REP_SERVER) throw unexpected(reply);
      names.push(decodeServerReply(reply.data));
    }
  }

  /** Size, flags and block sizes of an export, staying in the handshake (NBD_OPT_INFO). */
  info(name: string): Promise<NbdExportInfo> {
    return this.infoOrGo(NBD_OPT_INFO, name);
  }

  /** Selects an export and ends the handshake (NBD_OPT_GO); next comes transmission. */
  go(name: string): Promise<NbdExportInfo> {
    return this.infoOrGo(NBD_OPT_GO, name);
  }

  /** Selects an export the old way (NBD_OPT_EXPORT_NAME); an unknown name closes the connection. */
  async exportName(name: string): Promise<NbdExportInfo> {
    this.send(NBD_OPT_EXPORT_NAME, Buffer.from(name, 'utf8'));
    const reply = await this.reader.read(10 + (this.noZeroes ? 0 : EXPORT_NAME_PAD_BYTES));
    return decodeExportNameReply(reply);
  }

  /** Ends the handshake without an export (NBD_OPT_ABORT), waiting for the server's ACK. */
  async abort(): Promise<void> {
    this.send(NBD_OPT_ABORT);
    await this.expectReply(NBD_OPT_ABORT);
    this.detach();
    this.stream.end();
  }

  /** Stops reading and returns bytes that arrived after the last handshake message. */
  detach(): Buffer {
    return this.reader.detach();
  }

  private async infoOrGo(option: number, name: string): Promise<NbdExportInfo> {
    this.send(option, encodeGoRequest({ name, infos: [NBD_INFO_BLOCK_SIZE] }));
    let sizeBytes: number | undefined;
    let transmissionFlags = 0;
    let blockSize: NbdBlockSize | undefined;
    for (;;) {
      const reply = await this.expectReply(option);
      if (reply.type === NBD_REP_ACK) break;
      if (reply.type !== NBD_REP_INFO) throw unexpected(reply);
      const info = decodeInfo(reply.data);
      if (info.info === NBD_INFO_EXPORT && 'sizeBytes' in info) {
        sizeBytes = info.sizeBytes;
        transmissionFlags = info.transmissionFlags;
      } else if (info.info === NBD_INFO_BLOCK_SIZE && 'blockSize' in info) {
        blockSize = info.blockSize;
      }
    }
    if (sizeBytes === undefined) {
      throw new NbdProtocolError(`${optionName(option)} acknowledged without NBD_INFO_EXPORT`, 'unexpected-reply');
    }
    return blockSize ? { sizeBytes, transmissionFlags, blockSize } : { sizeBytes, transmissionFlags };
  }

  /** Reads a reply to `option`; an error reply throws NbdOptionError with the server's message. */
  private async expectReply(option: number): Promise<NbdOptionReply> {
    const reply = await this.readReply();
    if (reply.option !== option) {
      throw new NbdProtocolError(`reply to ${optionName(reply.option)} while waiting for ${optionName(option)}`, 'unexpected-reply', reply.option);
    }
    if (isErrorReply(reply.type)) {
      const said = reply.data.length > 0 ? `: ${reply.data.toString('utf8')}` : '';
      throw new NbdOptionError(`${optionName(option)} refused with ${replyName(reply.type)}${said}`, replyName(reply.type), optionName(option), reply.type);
    }
    return reply;
  }
}

function unexpected(reply: NbdOptionReply): NbdProtocolError {
  return new NbdProtocolError(`unexpected ${replyName(reply.type)} to ${optionName(reply.option)}`, 'unexpected-reply', reply.type);
}
