// The node flags `npm start` runs the service with are the ones runtime/heap.ts names (the
// benchmarks start instances with them), and a start leaves an operator's own flag alone.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../runtime/heap";
import { projectRoot } from "../runtime/nats-server";

describe("heap settings", () => {
  it("npm start passes NODE_FLAGS to the service's node", () => {
    const start: string = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")).scripts.start;
    const node = /exec node (.*)dist\/runtime\/cli\.js start/.exec(start);
    expect(node?.[1].trim().split(/\s+/)).toEqual([...NODE_FLAGS]);
  });
});
