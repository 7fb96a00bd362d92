#!/usr/bin/env node
// Makes sure a nats-server >= 2.10 is available and prints its path.
// Order: NATS_SERVER_BIN, `nats-server` on PATH, .tools/nats-server (fetched before).
// When none fits, downloads Debian 13's package into .tools/ without touching the
// system's apt configuration (a private sources list, state and cache dir).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const toolsDir = join(root, ".tools");
const localBin = join(toolsDir, "nats-server", "usr", "sbin", "nats-server");
const MIN = [2, 10];

/** Returns [major, minor, patch] of a nats-server binary, or null when it does not run. */
function versionOf(bin) {
  try {
    const out = execFileSync(bin, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(out);
    return m ? m.slice(1, 4).map(Number) : null;
  } catch {
    return null;
  }
}

const recentEnough = (v) => v && (v[0] > MIN[0] || (v[0] === MIN[0] && v[1] >= MIN[1]));

function onPath() {
  try {
    return execFileSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

function fetchFromDebian() {
  const work = join(toolsDir, "apt");
  rmSync(work, { recursive: true, force: true });
  for (const d of ["lists/partial", "cache/archives/partial"]) mkdirSync(join(work, d), { recursive: true });
  const sources = join(work, "sources.list");
  writeFileSync(
    sources,
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n",
  );
  const opts = [
    `-o`, `Dir::Etc::sourcelist=${sources}`,
    `-o`, `Dir::Etc::sourceparts=-`,
    `-o`, `Dir::State::Lists=${join(work, "lists")}`,
    `-o`, `Dir::Cache=${join(work, "cache")}`,
    `-o`, `APT::Sandbox::User=root`,
    `-qq`,
  ];
  process.stderr.write("nats-server >= 2.10 not found; fetching Debian's nats-server package into .tools/ …\n");
  execFileSync("apt-get", [...opts, "update"], { stdio: ["ignore", "ignore", "inherit"] });
  execFileSync("apt-get", [...opts, "download", "nats-server"], { cwd: work, stdio: ["ignore", "ignore", "inherit"] });
  const deb = readdirSync(work).find((f) => f.startsWith("nats-server_") && f.endsWith(".deb"));
  if (!deb) throw new Error("apt-get download produced no nats-server package");
  execFileSync("dpkg", ["-x", join(work, deb), join(toolsDir, "nats-server")]);
  rmSync(work, { recursive: true, force: true });
}

function main() {
  const candidates = [process.env.NATS_SERVER_BIN, onPath(), localBin].filter(Boolean);
  for (const bin of candidates) {
    if (recentEnough(versionOf(bin))) return bin;
  }
  if (process.env.NATS_SERVER_BIN) {
    throw new Error(`NATS_SERVER_BIN=${process.env.NATS_SERVER_BIN} is not a runnable nats-server >= 2.10`);
  }
  fetchFromDebian();
  if (recentEnough(versionOf(localBin))) return localBin;
  throw new Error("could not obtain nats-server >= 2.10 (tried NATS_SERVER_BIN, PATH, Debian 13 package)");
}

try {
  const bin = main();
  if (!process.argv.includes("--quiet")) console.log(bin);
} catch (err) {
  console.error(`ensure-nats-server: ${err.message}`);
  console.error("Install nats-server >= 2.10 and put it on PATH or set NATS_SERVER_BIN.");
  process.exit(1);
}
