// Plain-text tables for the command line: columns padded to their widest cell, numeric
// columns (numbers, or "-" for none) right-aligned, so operators can read a screen at a
// glance and scripts can split on spaces.

/** Renders a header and rows as aligned columns separated by two spaces. */
export function formatTable(header: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
  const isNumber = (c: string | number | undefined) => typeof c === "number" || (typeof c === "string" && /^(-|-?\d+(\.\d+)?)$/.test(c));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => isNumber(r[i])));
  const line = (r: string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...cells.map(line)].join("\n");
}
