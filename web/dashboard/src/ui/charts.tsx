// Two small SVG charts of our own (a sparkline and bars): a few hundred bytes instead of a
// chart library, enough for an hour of figures or a month of days.

/** A line over `values` (oldest first), scaled to its own maximum (at least `floor`). */
export function Sparkline({ values, label, floor = 1 }: { values: number[]; label: string; floor?: number }) {
  const w = 240;
  const h = 48;
  if (values.length < 2) {
    return (
      <svg className="chart" viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${label}: not enough figures yet`}>
        <line x1="0" y1={h - 1} x2={w} y2={h - 1} className="chart-axis" />
      </svg>
    );
  }
  const max = Math.max(floor, ...values);
  const step = w / (values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(" ");
  return (
    <svg className="chart" viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${label}: ${values.length} points, peak ${round(max)}`} preserveAspectRatio="none">
      <line x1="0" y1={h - 1} x2={w} y2={h - 1} className="chart-axis" />
      <polyline points={points} className="chart-line" fill="none" />
    </svg>
  );
}

/** One bar per value, with its label under the chart's title for screen readers. */
export function Bars({ values, labels, label }: { values: number[]; labels: string[]; label: string }) {
  const w = 300;
  const h = 80;
  const max = Math.max(1e-9, ...values);
  const bw = values.length > 0 ? w / values.length : w;
  return (
    <svg className="chart" viewBox={`0 0 ${w} ${h}`} role="img" aria-label={label} preserveAspectRatio="none">
      <line x1="0" y1={h - 1} x2={w} y2={h - 1} className="chart-axis" />
      {values.map((v, i) => (
        <rect key={labels[i] ?? i} x={i * bw + 1} width={Math.max(1, bw - 2)} y={h - 1 - (v / max) * (h - 4)} height={(v / max) * (h - 4)} className="chart-bar">
          <title>{`${labels[i] ?? ""}: ${round(v)}`}</title>
        </rect>
      ))}
    </svg>
  );
}

export function round(n: number): string {
  if (n === 0) return "0";
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(1);
  return n.toPrecision(2);
}

/** Bytes in the largest unit that keeps a number ≥ 1 (binary units). */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${round(v)} ${units[u]}`;
}
