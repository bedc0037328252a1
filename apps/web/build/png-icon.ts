import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** Distance from point p to the segment a-b. */
function segmentDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/**
 * The app icon as a PNG (RGBA): a white check mark on the brand blue. `inset` is the fraction of
 * the side kept clear around the mark (maskable icons need a safe zone).
 */
export function renderIcon(size: number, inset = 0.22): Buffer {
  const raw = Buffer.alloc((size * 4 + 1) * size);
  const s = size * (1 - 2 * inset);
  const o = size * inset;
  const stroke = s * 0.11;
  const [ax, ay, bx, by, cx, cy] = [0.12, 0.55, 0.4, 0.82, 0.9, 0.22].map((v) => o + v * s) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  for (let y = 0; y < size; y++) {
    const row = y * (size * 4 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < size; x++) {
      const d = Math.min(
        segmentDistance(x + 0.5, y + 0.5, ax, ay, bx, by),
        segmentDistance(x + 0.5, y + 0.5, bx, by, cx, cy),
      );
      const ink = Math.max(0, Math.min(1, stroke - d + 0.5)); // anti-aliased edge
      const i = row + 1 + x * 4;
      raw[i] = Math.round(0x1f + (255 - 0x1f) * ink);
      raw[i + 1] = Math.round(0x4e + (255 - 0x4e) * ink);
      raw[i + 2] = Math.round(0x79 + (255 - 0x79) * ink);
      raw[i + 3] = 255;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
