const WIDTH = 480;
const HEIGHT = 300;
const MARGIN = { left: 56, right: 16, top: 44, bottom: 48 };
const BINS = 20;

/**
 * A self-contained SVG histogram of ISI-violation ratios with the cutoff as a dashed line. The x
 * range stretches to the largest ratio and to twice the cutoff, so the line is never at the edge.
 */
export function renderIsiHistogram(ratios: readonly number[], options: { cutoff: number; refractoryMs: number; session: string }): string {
  const { cutoff, refractoryMs, session } = options;
  const upper = niceCeiling(Math.max(...ratios, 2 * cutoff, 0.01));
  const counts = new Array<number>(BINS).fill(0);
  for (const ratio of ratios) counts[Math.min(BINS - 1, Math.floor((ratio / upper) * BINS))]!++;
  const maxCount = Math.max(1, ...counts);

  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (value: number) => MARGIN.left + (value / upper) * plotW;
  const y = (count: number) => MARGIN.top + plotH - (count / maxCount) * plotH;
  const baseline = y(0);
  const binW = plotW / BINS;

  const bars = counts
    .map((count, i) =>
      count === 0
        ? ''
        : `  <rect x="${fmt(MARGIN.left + i * binW + 1)}" y="${fmt(y(count))}" width="${fmt(binW - 2)}" height="${fmt(baseline - y(count))}" fill="#4c78a8"/>\n`,
    )
    .join('');
  const xTicks = [0, upper / 2, upper]
    .map((v) => `  <text x="${fmt(x(v))}" y="${fmt(baseline + 16)}" text-anchor="middle">${fmt(v)}</text>\n`)
    .join('');
  const yTicks = [0, maxCount]
    .map((c) => `  <text x="${fmt(MARGIN.left - 6)}" y="${fmt(y(c) + 4)}" text-anchor="end">${c}</text>\n`)
    .join('');
  const cutoffX = fmt(x(cutoff));

  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">\n` +
    `  <title>${escapeXml(`${session}: ISI violation ratios`)}</title>\n` +
    `  <rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>\n` +
    `  <text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="13">${escapeXml(session)}</text>\n` +
    bars +
    `  <line x1="${MARGIN.left}" y1="${fmt(baseline)}" x2="${WIDTH - MARGIN.right}" y2="${fmt(baseline)}" stroke="black"/>\n` +
    `  <line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${fmt(baseline)}" stroke="black"/>\n` +
    xTicks +
    yTicks +
    `  <line x1="${cutoffX}" y1="${MARGIN.top}" x2="${cutoffX}" y2="${fmt(baseline)}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>\n` +
    `  <text x="${cutoffX}" y="${MARGIN.top - 4}" text-anchor="middle" fill="#d62728">cutoff ${fmt(cutoff)}</text>\n` +
    `  <text x="${fmt(MARGIN.left + plotW / 2)}" y="${HEIGHT - 8}" text-anchor="middle">ISI violation ratio (fraction of ISIs &lt; ${fmt(refractoryMs)} ms)</text>\n` +
    `  <text transform="translate(14 ${fmt(MARGIN.top + plotH / 2)}) rotate(-90)" text-anchor="middle">units</text>\n` +
    `</svg>\n`
  );
}

/** The smallest of 1, 2 or 5 × 10^k at or above the value, for round axis labels. */
function niceCeiling(value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= value) return Number((step * magnitude).toPrecision(12));
  return 10 * magnitude;
}

function fmt(value: number): string {
  return String(Number(value.toFixed(4)));
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
