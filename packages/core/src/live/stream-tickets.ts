import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MasterKey } from '../crypto/master-key.ts';
import { unauthenticated } from '../errors/app-error.ts';

/** Who a stream ticket was issued to. */
export interface TicketClaims {
  tenantId: string;
  /** user:<id> or api_key:<id> */
  subject: string;
}

const TTL_SECONDS = 60;

/**
 * Short-lived, single-use tickets for the live stream. A browser's EventSource cannot send an
 * Authorization header, and an access token in a URL ends up in logs and history; a ticket is
 * signed (HMAC, key derived from the master key), expires within a minute and works once.
 */
export class StreamTickets {
  private readonly key: Buffer;
  /** Nonces already used, until they expire (a single-process guard against replay). */
  private readonly used = new Map<string, number>();

  constructor(
    master: MasterKey,
    private readonly now: () => number = Date.now,
  ) {
    this.key = master.derive('stream-ticket');
  }

  issue(claims: TicketClaims): { ticket: string; expiresIn: number } {
    const body = Buffer.from(
      JSON.stringify({
        ...claims,
        exp: Math.floor(this.now() / 1000) + TTL_SECONDS,
        n: randomBytes(12).toString('base64url'),
      }),
    ).toString('base64url');
    return { ticket: `${body}.${this.sign(body)}`, expiresIn: TTL_SECONDS };
  }

  /** The claims of a valid, unexpired, unused ticket (it is then spent); 401 otherwise. */
  redeem(ticket: string): TicketClaims {
    const [body, sig, extra] = ticket.split('.');
    if (!body || !sig || extra !== undefined) throw unauthenticated('invalid stream ticket');
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given))
      throw unauthenticated('invalid stream ticket');
    const c = JSON.parse(Buffer.from(body, 'base64url').toString()) as TicketClaims & {
      exp: number;
      n: string;
    };
    const nowS = Math.floor(this.now() / 1000);
    if (c.exp < nowS) throw unauthenticated('the stream ticket expired: ask for a new one');
    for (const [n, exp] of this.used) if (exp < nowS) this.used.delete(n);
    if (this.used.has(c.n)) throw unauthenticated('the stream ticket was already used');
    this.used.set(c.n, c.exp);
    return { tenantId: c.tenantId, subject: c.subject };
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
