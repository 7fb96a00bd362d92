#!/usr/bin/env node
// Makes sure a nats-server as recent as package.json's engines["nats-server"] is available and
// prints its path (nothing with --quiet). Order: NATS_SERVER_BIN (used or refused, never passed
// over), `nats-server` on PATH, .tools/nats-server (fetched before). When none fits, fetches
// Debian unstable's nats-server package from the Debian archive the machine's own apt sources
// name (so a local mirror is honoured) into .tools/, with a private sources list, state and
// cache dir: the system's apt configuration and package database are left alone.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { aptSourceEntries, debianArchiveUri } from "./apt-sources.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const toolsDir = join(root, ".tools");
const localBin = join(toolsDir, "nats-server", "usr", "sbin", "nats-server");
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
const engine = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).engines["nats-server"];
const MIN = /(\d+)\.(\d+)/.exec(engine).slice(1, 3).map(Number);
const NEEDED = `${MIN[0]}.${MIN[1]}`;

/** [major, minor, patch] of a nats-server binary, or null when it does not run. */
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

/** Full path of a command on PATH, or null. */
function onPath(cmd) {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

/** The files apt reads its sources from (Dir::Etc::sourcelist and ::sourceparts), with their text. */
function aptSourceFiles() {
  let list = "/etc/apt/sources.list";
  let parts = "/etc/apt/sources.list.d/";
  try {
    const out = execFileSync("apt-config", ["shell", "L", "Dir::Etc::sourcelist/f", "P", "Dir::Etc::sourceparts/d"], { encoding: "utf8" });
    list = /^L='(.*)'$/m.exec(out)?.[1] ?? list;
    parts = /^P='(.*)'$/m.exec(out)?.[1] ?? parts;
  } catch {
    // apt-config missing: apt's defaults.
  }
  const names = [list, ...(existsSync(parts) ? readdirSync(parts).sort().map((f) => join(parts, f)) : [])];
  return names.flatMap((name) => {
    try {
      return [{ name, text: readFileSync(name, "utf8") }];
    } catch {
      return [];
    }
  });
}

/** Runs apt-get with the private configuration; a failure carries apt's own words. */
function aptGet(opts, args, cwd) {
  try {
    execFileSync("apt-get", [...opts, ...args], { cwd, encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    throw new Error(`apt-get ${args[0]} failed: ${String(err.stderr || err.message).trim()}`);
  }
}

function fetchFromDebian(why) {
  if (!onPath("apt-get") || !onPath("dpkg")) throw new Error(`${why}, and there is no apt-get/dpkg here to fetch Debian's package with.`);
  const uri = debianArchiveUri(aptSourceEntries(aptSourceFiles()));
  if (!uri) throw new Error(`${why}, and apt's sources name no Debian archive to fetch Debian's package from.`);
  if (!existsSync(KEYRING)) throw new Error(`${why}, and ${KEYRING} (package debian-archive-keyring) is missing.`);

  const work = join(toolsDir, "apt");
  rmSync(work, { recursive: true, force: true });
  for (const d of ["lists/partial", "cache/archives/partial"]) mkdirSync(join(work, d), { recursive: true });
  const sources = join(work, "sources.list");
  writeFileSync(sources, `deb [signed-by=${KEYRING}] ${uri} sid main\n`);
  const opts = [
    "-o", `Dir::Etc::sourcelist=${sources}`,
    "-o", "Dir::Etc::sourceparts=-",
    "-o", `Dir::State::Lists=${join(work, "lists")}`,
    "-o", `Dir::Cache=${join(work, "cache")}`,
    "-o", "APT::Sandbox::User=root",
    "-qq",
  ];
  process.stderr.write(`${why}: fetching Debian sid's nats-server package from ${uri} into .tools/ …\n`);
  aptGet(opts, ["update"], work);
  aptGet(opts, ["download", "nats-server"], work);
  const deb = readdirSync(work).find((f) => f.startsWith("nats-server_") && f.endsWith(".deb"));
  if (!deb) throw new Error("apt-get download produced no nats-server package");
  rmSync(join(toolsDir, "nats-server"), { recursive: true, force: true });
  execFileSync("dpkg", ["-x", join(work, deb), join(toolsDir, "nats-server")]);
  rmSync(work, { recursive: true, force: true });
}

function main() {
  const named = process.env.NATS_SERVER_BIN;
  if (named) {
    const v = versionOf(named);
    if (recentEnough(v)) return named;
    throw new Error(`NATS_SERVER_BIN=${named} ${v ? `is nats-server ${v.join(".")}` : "does not run"}; rosey-llm needs ${NEEDED} or newer.`);
  }
  const path = onPath("nats-server");
  const pathVersion = path && versionOf(path);
  if (recentEnough(pathVersion)) return path;
  const local = versionOf(localBin);
  if (recentEnough(local)) return localBin;
  const found = local ? `.tools/nats-server is ${local.join(".")}` : pathVersion ? `${path} is ${pathVersion.join(".")}` : "";
  fetchFromDebian(found ? `${found}, older than ${NEEDED}` : `nats-server ${NEEDED} or newer not found`);
  const fetched = versionOf(localBin);
  if (recentEnough(fetched)) return localBin;
  throw new Error(`Debian sid's nats-server is ${fetched ? fetched.join(".") : "not runnable here"}, older than ${NEEDED}.`);
}

try {
  const bin = main();
  if (!process.argv.includes("--quiet")) console.log(bin);
} catch (err) {
  console.error(`ensure-nats-server: ${err.message}`);
  console.error(
    `Install nats-server ${NEEDED} or newer (a release binary from https://github.com/nats-io/nats-server/releases, ` +
      "or your distribution's package if it is recent enough) and put it on PATH or set NATS_SERVER_BIN to its path.",
  );
  process.exit(1);
}
