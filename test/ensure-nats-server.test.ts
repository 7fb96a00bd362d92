// How scripts/ensure-nats-server.mjs finds Debian's archive in apt's sources (one-line and
// deb822 files, disabled entries, mirrors), and what it says where it cannot fetch: run from
// a scratch copy of the project so no nats-server of this checkout is found.
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { aptSourceEntries, debianArchiveUri } from "../scripts/apt-sources.mjs";

const pick = (...files: Array<[string, string]>) => debianArchiveUri(aptSourceEntries(files.map(([name, text]) => ({ name, text }))));

describe("Debian archive from apt sources", () => {
  it("reads one-line entries with options and skips security and updates suites", () => {
    const list = [
      "# the usual three",
      "deb http://security.example.org/debian-security bookworm-security main",
      "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.example.org/debian bookworm main contrib",
      "deb http://ftp.example.org/debian bookworm-updates main",
    ].join("\n");
    expect(aptSourceEntries([{ name: "/etc/apt/sources.list", text: list }])[0]).toMatchObject({
      type: "deb",
      uri: "http://security.example.org/debian-security",
      suite: "bookworm-security",
    });
    expect(pick(["/etc/apt/sources.list", list])).toBe("http://ftp.example.org/debian");
  });

  it("reads deb822 paragraphs, every URI and suite of them", () => {
    const sources = [
      "Types: deb deb-src",
      "# a comment inside the paragraph",
      "URIs: http://mirror.example.net/debian/",
      "Suites: trixie trixie-updates",
      "Components: main non-free-firmware",
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
      "",
      "Types: deb",
      "URIs: http://mirror.example.net/debian-security/",
      "Suites: trixie-security",
      "Components: main",
    ].join("\n");
    const entries = aptSourceEntries([{ name: "/etc/apt/sources.list.d/debian.sources", text: sources }]);
    expect(entries.map((e) => `${e.type} ${e.suite}`)).toEqual(["deb trixie", "deb trixie-updates", "deb-src trixie", "deb-src trixie-updates", "deb trixie-security"]);
    expect(debianArchiveUri(entries)).toBe("http://mirror.example.net/debian/");
  });

  it("ignores commented lines, Enabled: no paragraphs and files apt does not read", () => {
    expect(
      pick(
        ["/etc/apt/sources.list", "# deb http://old.example.org/debian bookworm main\n"],
        ["/etc/apt/sources.list.d/off.sources", "Enabled: no\nTypes: deb\nURIs: http://off.example.org/debian\nSuites: bookworm\nComponents: main\n"],
        ["/etc/apt/sources.list.d/debian.list.disabled", "deb http://disabled.example.org/debian bookworm main\n"],
        ["/etc/apt/sources.list.d/debian.list.save", "deb http://saved.example.org/debian bookworm main\n"],
      ),
    ).toBeNull();
  });

  it("prefers Debian's main archive over other repositories, whatever the order", () => {
    expect(
      pick(
        ["/etc/apt/sources.list.d/a-nodesource.sources", "Types: deb\nURIs: https://nodes.example.com/node_20.x\nSuites: nodistro\nComponents: main\n"],
        ["/etc/apt/sources.list.d/b-cloud.list", "deb https://packages.example.com/apt cloud-sdk-bookworm main\n"],
        ["/etc/apt/sources.list.d/c-backports.list", "deb http://ftp.example.org/debian bookworm-backports main\n"],
        ["/etc/apt/sources.list.d/d-debian.list", "deb http://ftp.example.org/debian bookworm main\n"],
      ),
    ).toBe("http://ftp.example.org/debian");
  });

  it("keeps a mirror URI as written, mirror+file and local paths included", () => {
    expect(pick(["/etc/apt/sources.list.d/debian.sources", "Types: deb\nURIs: mirror+file:///etc/apt/mirrors/debian.list\nSuites: bookworm\nComponents: main\n"])).toBe(
      "mirror+file:///etc/apt/mirrors/debian.list",
    );
    expect(pick(["/etc/apt/sources.list", "deb [trusted=yes] http://apt-cache.lan:3142/debian stable main\r\n"])).toBe("http://apt-cache.lan:3142/debian");
    expect(pick(["/etc/apt/sources.list", "deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n"])).toBeNull();
  });
});

describe("ensure-nats-server.mjs where it cannot fetch", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** A copy of the project's script and package.json, and a bin dir holding only `links`. */
  function scratch(links: string[]): { dir: string; bin: string } {
    const dir = mkdtempSync(join(tmpdir(), "rosey-llm-ensure-"));
    dirs.push(dir);
    mkdirSync(join(dir, "scripts"));
    mkdirSync(join(dir, "bin"));
    copyFileSync("package.json", join(dir, "package.json"));
    for (const f of ["ensure-nats-server.mjs", "apt-sources.mjs"]) copyFileSync(join("scripts", f), join(dir, "scripts", f));
    for (const l of links) symlinkSync(l, join(dir, "bin", l.split("/").pop()!));
    return { dir, bin: join(dir, "bin") };
  }

  const run = (dir: string, env: Record<string, string>) => {
    const r = spawnSync(process.execPath, [join(dir, "scripts", "ensure-nats-server.mjs")], { env, encoding: "utf8" });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it("without apt-get, says what to install and exits non-zero", () => {
    const { dir, bin } = scratch([process.execPath, "/bin/sh"]);
    const r = run(dir, { PATH: bin, HOME: dir });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/nats-server 2\.12 or newer not found, and there is no apt-get\/dpkg here/);
    expect(r.stderr).toMatch(/Install nats-server 2\.12 or newer .*github\.com\/nats-io\/nats-server\/releases.*PATH or set NATS_SERVER_BIN/);
  });

  it("with apt sources that name no Debian archive, says so", () => {
    const { dir, bin } = scratch([process.execPath, "/bin/sh", "/usr/bin/apt-get", "/usr/bin/apt-config", "/usr/bin/dpkg"]);
    mkdirSync(join(dir, "apt-parts"));
    writeFileSync(join(dir, "apt-parts", "other.list"), "deb https://packages.example.com/apt cloud-sdk-bookworm main\n");
    writeFileSync(join(dir, "apt.conf"), `Dir::Etc::sourcelist "${dir}/none.list";\nDir::Etc::sourceparts "${dir}/apt-parts";\n`);
    const r = run(dir, { PATH: bin, HOME: dir, APT_CONFIG: join(dir, "apt.conf") });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/apt's sources name no Debian archive/);
  });

  it("refuses a NATS_SERVER_BIN older than the minimum, naming both versions", () => {
    const { dir } = scratch([]);
    const fake = join(dir, "old-nats-server");
    writeFileSync(fake, '#!/bin/sh\necho "nats-server: v2.10.29"\n');
    chmodSync(fake, 0o755);
    const r = run(dir, { PATH: "/usr/bin:/bin", HOME: dir, NATS_SERVER_BIN: fake });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`NATS_SERVER_BIN=${fake} is nats-server 2.10.29; rosey-llm needs 2.12 or newer.`);
  });
});
