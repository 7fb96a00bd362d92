// Shared helpers for the benchmarks: percentiles and writing a section of BENCHMARKS.md.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The p-th percentile (0–100) of samples, by nearest rank. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

/** Formats milliseconds with 3 significant digits (whole milliseconds from 1,000 up). */
export const ms = (x: number) => `${x >= 1000 ? Math.round(x).toLocaleString("en-US") : x.toPrecision(3)} ms`;

/** The median of samples. */
export const median = (xs: number[]) => percentile(xs, 50);

/** A number with `digits` decimals, or "–" when there is none. */
export const fixed = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "–");

/** A whole number with thousands separators. */
export const int = (x: number) => Math.round(x).toLocaleString("en-US");

/**
 * Replaces (or appends) the section `name` of BENCHMARKS.md, delimited by HTML comments,
 * so each benchmark owns its part of the file.
 */
export function writeSection(name: string, markdown: string, file = join(process.cwd(), "BENCHMARKS.md")): void {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  let text = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmarks\n\nWritten by `npm run bench`; every figure is from the run that wrote it.\n";
  const block = `${start}\n${markdown.trim()}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  text = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
}
