// The package as a plugin author gets it: `npm pack` (run in a copy of the project, so the
// prepack build does not replace this checkout's dist/ under the other test files), the
// tarball installed into a scratch project, then `rosey-llm/client` imported from plain
// JavaScript against a running service, its types checked with tsc, and the bin run.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "../runtime/nats-server";
import { startTestServer, type TestServer } from "./helpers/nats";
import { startInstance, type TestInstance } from "./helpers/service";

const SKIP = new Set(["node_modules", "dist", ".tools", ".data", ".git", "coverage"]);

describe("npm pack", () => {
  const work = mkdtempSync(join(tmpdir(), "rosey-llm-pack-"));
  const copy = join(work, "src");
  const app = join(work, "app");
  let files: string[];
  let srv: TestServer;
  let svc: TestInstance;

  // Asynchronous: the service under test runs in this process and must keep answering.
  const run = async (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) =>
    (await promisify(execFile)(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, ...env } })).stdout;

  beforeAll(async () => {
    cpSync(projectRoot, copy, { recursive: true, filter: (src) => !SKIP.has(src.split("/").pop()!) });
    symlinkSync(join(projectRoot, "node_modules"), join(copy, "node_modules"));
    const packed = JSON.parse(await run("npm", ["pack", "--json", "--pack-destination", work], copy));
    files = packed[0].files.map((f: { path: string }) => f.path);
    const tgz = join(work, packed[0].filename);

    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-plugin", private: true, type: "module" }));
    await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tgz], app);

    srv = await startTestServer();
    svc = await startInstance(srv.url);
  }, 120_000);

  afterAll(async () => {
    await svc?.stop();
    await srv?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it("ships the bundles, types, bin and docs, and no tests, benchmarks or sources", () => {
    expect(files).toEqual(expect.arrayContaining(["dist/client.js", "dist/types/lib/client.d.ts", "dist/runtime/cli.js", "dist/runtime/synonyms.txt", "bin/rosey-llm.mjs", "README.md"]));
    expect(files.filter((f) => /^dist\/handlers\/.*\.js$/.test(f)).length).toBeGreaterThanOrEqual(12);
    expect(files.filter((f) => /^(test|bench|examples|lib|handlers|runtime)\//.test(f))).toEqual([]);
    expect(readdirSync(join(app, "node_modules", "rosey-llm"))).not.toContain("test");
  });

  it("imports rosey-llm/client from plain JavaScript and calls a running service", async () => {
    writeFileSync(
      join(app, "status.mjs"),
      [
        'import { connect } from "nats";',
        'import { createClient } from "rosey-llm/client";',
        "const nc = await connect({ servers: process.argv[2] });",
        "const r = await createClient(nc).status();",
        "console.log(JSON.stringify(r));",
        "await nc.close();",
      ].join("\n"),
    );
    const reply = JSON.parse(await run(process.execPath, ["status.mjs", srv.url], app));
    expect(reply).toMatchObject({ success: true, healthy: true, instance: svc.id });
  });

  it("type-checks a TypeScript plugin against the shipped types", async () => {
    writeFileSync(
      join(app, "plugin.ts"),
      [
        'import type { NatsConnection } from "nats";',
        'import { createClient, type Result } from "rosey-llm/client";',
        "export async function reply(nc: NatsConnection): Promise<string> {",
        '  const r: Result<"chat"> = await createClient(nc).chat({ channel: "#x", user: "u", message: "hi" });',
        "  return r.success ? `${r.provider}: ${r.content}` : `${r.error_code}: ${r.error}`;",
        "}",
        "export async function wrong(nc: NatsConnection): Promise<void> {",
        "  // @ts-expect-error: chat needs user and message",
        '  await createClient(nc).chat({ channel: "#x" });',
        "}",
      ].join("\n"),
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { module: "nodenext", moduleResolution: "nodenext", target: "es2022", strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ["plugin.ts"] }),
    );
    // Throws with tsc's diagnostics on stdout when the shipped types do not resolve or do not fit.
    await expect(run(process.execPath, [join(projectRoot, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], app)).resolves.toBe("");
  });

  it("runs the installed bin", async () => {
    const bin = join(app, "node_modules", ".bin", "rosey-llm");
    expect(await run(bin, ["--help"], app)).toMatch(/^rosey-llm \d+\.\d+\.\d+/);
    const ls = await run(bin, ["ls"], app, { NATS_URL: srv.url });
    expect(ls).toContain(svc.id);
    expect(ls).toMatch(/1 instance\(s\)/);
  });
});
