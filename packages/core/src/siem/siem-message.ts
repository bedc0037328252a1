import type { AuditEntry } from '../audit/audit-log.ts';

/**
 * How an audit entry travels. Every message carries the tenant, the seq and the entry's chain hash
 * (and the previous hash), so a receiver can drop duplicates (at least once: after an outage a batch
 * may arrive twice) and verify the chain order.
 */

/** Private enterprise number 32473 is the one RFC 5612 reserves for documentation and examples. */
export const SD_ID = 'steward@32473';
export const APP_NAME = 'steward';

/** The JSON body of one entry (syslog MSG and each element of an HTTPS batch). */
export function entryJson(e: AuditEntry): Record<string, unknown> {
  return {
    tenantId: e.tenantId,
    seq: e.seq,
    hash: e.hash,
    prevHash: e.prevHash,
    at: e.at,
    action: e.action,
    outcome: e.outcome,
    actorType: e.actorType,
    actorId: e.actorId,
    actorLabel: e.actorLabel,
    targetType: e.targetType,
    targetId: e.targetId,
    requestId: e.requestId,
    ip: e.ip,
    details: e.details,
  };
}

/** RFC 5424 section 6.3.3: inside PARAM-VALUE, '"', '\' and ']' are escaped with '\'. */
export function escapeParamValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => '\\' + c);
}

/** A header field: printable US-ASCII without spaces, at most `max` characters, '-' when empty. */
function headerField(value: string | null | undefined, max: number): string {
  const clean = (value ?? '').replace(/[^!-~]/g, '_').slice(0, max);
  return clean || '-';
}

export interface SyslogOptions {
  facility: number;
  hostname: string;
}

/** Severity: notice for successes, warning for failures and denials. */
export function severityOf(e: AuditEntry): number {
  return e.outcome === 'success' ? 5 : 4;
}

/** One RFC 5424 message (no framing). MSG is the entry as JSON, UTF-8 with a BOM. */
export function syslogMessage(e: AuditEntry, opts: SyslogOptions): Buffer {
  const pri = opts.facility * 8 + severityOf(e);
  const sd =
    `[${SD_ID} tenant="${escapeParamValue(e.tenantId)}" seq="${e.seq}" hash="${escapeParamValue(e.hash)}"` +
    ` prevHash="${escapeParamValue(e.prevHash)}" outcome="${escapeParamValue(e.outcome)}"]`;
  const header = `<${pri}>1 ${e.at} ${headerField(opts.hostname, 255)} ${APP_NAME} - ${headerField(e.action, 32)} ${sd} `;
  return Buffer.concat([
    Buffer.from(header, 'utf8'),
    Buffer.from([0xef, 0xbb, 0xbf]),
    Buffer.from(JSON.stringify(entryJson(e)), 'utf8'),
  ]);
}

/** RFC 6587 section 3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`. */
export function octetFrame(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}

export interface ParsedSyslog {
  pri: number;
  version: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  structuredData: Record<string, Record<string, string>>;
  msg: string;
}

/**
 * Split an octet-counted stream into complete messages; returns them and the unconsumed rest.
 * Used by receivers (tests, and anyone checking what Steward sends).
 */
export function readOctetFrames(buffer: Buffer): { frames: Buffer[]; rest: Buffer } {
  const frames: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const space = buffer.indexOf(0x20, offset);
    if (space < 0) break;
    const len = Number(buffer.subarray(offset, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0) throw new Error('bad octet-counting frame');
    if (buffer.length < space + 1 + len) break;
    frames.push(buffer.subarray(space + 1, space + 1 + len));
    offset = space + 1 + len;
  }
  return { frames, rest: buffer.subarray(offset) };
}

/** Parse one RFC 5424 message (strict enough to catch a malformed header or SD element). */
export function parseSyslog(frame: Buffer): ParsedSyslog {
  const text = frame.toString('utf8');
  const head = /^<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(text);
  if (!head) throw new Error('not an RFC 5424 header');
  let i = head[0].length;
  const structuredData: Record<string, Record<string, string>> = {};
  if (text[i] === '-') i++;
  else {
    while (text[i] === '[') {
      const idEnd = text.slice(i).search(/[ \]]/) + i;
      const id = text.slice(i + 1, idEnd);
      const params: Record<string, string> = {};
      i = idEnd;
      while (text[i] === ' ') {
        const eq = text.indexOf('="', i);
        const name = text.slice(i + 1, eq);
        let j = eq + 2;
        let value = '';
        while (text[j] !== '"') {
          if (j >= text.length) throw new Error('unterminated PARAM-VALUE');
          if (text[j] === '\\' && ['"', '\\', ']'].includes(text[j + 1]!)) j++;
          value += text[j];
          j++;
        }
        params[name] = value;
        i = j + 1;
      }
      if (text[i] !== ']') throw new Error('bad SD-ELEMENT');
      structuredData[id] = params;
      i++;
    }
  }
  let msg = '';
  if (text[i] === ' ') msg = text.slice(i + 1).replace(/^\uFEFF/, '');
  else if (i < text.length) throw new Error('no space before MSG');
  return {
    pri: Number(head[1]),
    version: Number(head[2]),
    timestamp: head[3]!,
    hostname: head[4]!,
    appName: head[5]!,
    procId: head[6]!,
    msgId: head[7]!,
    structuredData,
    msg,
  };
}

/** The HTTPS batch body: one tenant's consecutive entries, oldest first. */
export function httpsBatch(destination: string, tenantId: string, entries: AuditEntry[]): string {
  return JSON.stringify({
    source: APP_NAME,
    destination,
    tenantId,
    firstSeq: entries[0]?.seq ?? null,
    lastSeq: entries.at(-1)?.seq ?? null,
    entries: entries.map(entryJson),
  });
}
