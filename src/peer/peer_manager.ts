/**
 * One PeerLink per member of the cluster other than this host, following `ips/ip-<host>`
 * as members join and leave.
 */
import type { MarsTree, TreeEntry } from '../tree/index.js';
import { PeerLink, type KnownEntry } from './peer_link.js';
import type { TransportFactory } from './transport.js';

export interface PeerManagerOptions {
  readonly tree: MarsTree;
  readonly factory: TransportFactory;
  readonly log: (line: string) => void;
  readonly onMerged?: (host: string, applied: readonly TreeEntry[]) => void;
  readonly onState?: (host: string, up: boolean) => void;
  /** Passed to every link (PeerLinkOptions.known). */
  readonly known?: KnownEntry;
}

export class PeerManager {
  private readonly links = new Map<string, PeerLink>();

  constructor(private readonly opts: PeerManagerOptions) {}

  /** Start links to new members, stop links to members that left (or changed address). */
  async refresh(): Promise<void> {
    const self = this.opts.tree.host;
    const members = new Map<string, string>();
    for (const [key, value] of await this.opts.tree.values('ips/')) {
      const m = /^ips\/ip-(.+)$/.exec(key);
      if (m && value !== null && m[1] !== self) members.set(m[1]!, value);
    }
    for (const [host, link] of this.links) {
      if (members.get(host) !== link.address) {
        link.stop();
        this.links.delete(host);
      }
    }
    for (const [host, address] of members) {
      if (this.links.has(host)) continue;
      const link = new PeerLink({
        tree: this.opts.tree,
        peer: { host, address },
        factory: this.opts.factory,
        log: this.opts.log,
        onMerged: (applied) => this.opts.onMerged?.(host, applied),
        onState: (up) => this.opts.onState?.(host, up),
        known: this.opts.known,
      });
      this.links.set(host, link);
      link.start();
    }
  }

  link(host: string): PeerLink | undefined {
    return this.links.get(host);
  }

  all(): PeerLink[] {
    return [...this.links.values()];
  }

  stop(): void {
    for (const link of this.links.values()) link.stop();
    this.links.clear();
  }
}
