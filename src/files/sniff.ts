// Content sniffing: the real type of a file from its first bytes, and the rule that the declared
// type must match them. Hand-written rather than a library: the formats Levee accepts are a short,
// stable list of magic numbers (a few dozen lines), and a sniffer on the upload path should have no
// dependency that could change what it accepts. Unknown bytes sniff as `undefined`, never throw.

/** How many leading bytes `sniff` looks at (ISO-BMFF brand lists and the text check fit in it). */
export const SNIFF_BYTES = 1024;

const ascii = (b: Uint8Array, at: number, len: number) => String.fromCharCode(...b.subarray(at, at + len));
const startsWith = (b: Uint8Array, sig: readonly number[], at = 0) => b.length >= at + sig.length && sig.every((v, i) => b[at + i] === v);

/** ISO base media file format (MP4, MOV, HEIC, AVIF): `ftyp` box brands → type. */
const FTYP_BRANDS: Record<string, string> = {
  avif: 'image/avif',
  avis: 'image/avif',
  heic: 'image/heic',
  heix: 'image/heic',
  heim: 'image/heic',
  heis: 'image/heic',
  hevc: 'image/heic-sequence',
  hevx: 'image/heic-sequence',
  mif1: 'image/heif',
  msf1: 'image/heif-sequence',
  'qt  ': 'video/quicktime',
  isom: 'video/mp4',
  iso2: 'video/mp4',
  iso4: 'video/mp4',
  iso5: 'video/mp4',
  iso6: 'video/mp4',
  mp41: 'video/mp4',
  mp42: 'video/mp4',
  avc1: 'video/mp4',
  dash: 'video/mp4',
  'M4V ': 'video/mp4',
  M4VP: 'video/mp4',
  mmp4: 'video/mp4',
  '3gp4': 'video/3gpp',
  '3gp5': 'video/3gpp',
  '3gp6': 'video/3gpp',
  '3g2a': 'video/3gpp2',
  'M4A ': 'audio/mp4',
};

function sniffFtyp(b: Uint8Array): string | undefined {
  if (b.length < 16 || ascii(b, 4, 4) !== 'ftyp') return undefined;
  const boxSize = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  if (boxSize < 16) return undefined;
  const major = FTYP_BRANDS[ascii(b, 8, 4)];
  const compatible: string[] = [];
  for (let at = 16; at + 4 <= Math.min(boxSize, b.length); at += 4) {
    const t = FTYP_BRANDS[ascii(b, at, 4)];
    if (t) compatible.push(t);
  }
  // A generic major brand (`mif1`, `isom`) defers to a still image named among the compatible
  // brands: AVIF and HEIC files often start `mif1`.
  const still = (t: string | undefined) => t === 'image/avif' || t === 'image/heic';
  if (still(major)) return major;
  return compatible.find(still) ?? major ?? compatible[0];
}

/** Text: valid UTF-8 (a sequence cut at the end of the sample is fine) with no control bytes but tab, LF, FF and CR. */
function isText(b: Uint8Array): boolean {
  if (b.length === 0) return false;
  for (const c of b) if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0c && c !== 0x0d) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** The type the bytes are, from the first `SNIFF_BYTES` of a file; `undefined` when not recognised. */
export function sniff(bytes: Uint8Array): string | undefined {
  const b = bytes.subarray(0, SNIFF_BYTES);
  if (startsWith(b, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) return 'image/gif';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return 'image/webp';
  if (b.length >= 5 && ascii(b, 0, 5) === '%PDF-') return 'application/pdf';
  if (startsWith(b, [0x1a, 0x45, 0xdf, 0xa3])) return 'video/webm';
  const iso = sniffFtyp(b);
  if (iso) return iso;
  if (isText(b)) return 'text/plain';
  return undefined;
}

/** Common aliases clients send, mapped to the names `sniff` returns. */
const ALIASES: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'image/x-png': 'image/png',
  'video/x-m4v': 'video/mp4',
  'image/heif': 'image/heif',
};

/** Types whose bytes cannot be told apart by magic numbers: any sniffed member satisfies a declared member. */
const FAMILIES: string[][] = [
  ['image/heic', 'image/heif'],
  ['image/heic-sequence', 'image/heif-sequence'],
  // Text formats are all text by their bytes; the bucket's allowed types decide which are welcome.
  ['text/plain', 'text/csv', 'text/markdown', 'application/json'],
];

/** `Image/JPG; charset=x` → `image/jpeg`. */
export function normalizeType(declared: string): string {
  const t = declared.split(';')[0]!.trim().toLowerCase();
  return ALIASES[t] ?? t;
}

/** Whether bytes sniffed as `sniffed` may be stored as `declared`. Unrecognised bytes match nothing. */
export function declaredMatches(declared: string, sniffed: string | undefined): boolean {
  if (sniffed === undefined) return false;
  const d = normalizeType(declared);
  if (d === sniffed) return true;
  return FAMILIES.some((f) => f.includes(d) && f.includes(sniffed));
}
