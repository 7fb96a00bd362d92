// Reads apt's package sources the way apt does and picks the one that serves Debian's main
// archive, so scripts/ensure-nats-server.mjs fetches from the machine's own mirror. Pure
// functions over file names and texts; the caller reads the files.
//
// What apt reads: sources.list and sources.list.d/*.list (one line per entry:
// `deb [opt=val …] URI SUITE COMPONENT…`), and sources.list.d/*.sources (deb822 paragraphs
// with Types/URIs/Suites/Components, `Enabled: no` turns one off). Other file names in
// sources.list.d are ignored by apt, and so here.

/** Suites of Debian's main archive (codenames from buster on, and the release aliases). */
const DEBIAN_SUITES = new Set([
  "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
  "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental",
]);

/**
 * @typedef {{ file: string, type: string, uri: string, suite: string, components: string[], signedBy?: string }} AptEntry
 */

/**
 * Entries of a one-line-style file (sources.list, *.list).
 * @param {string} file
 * @param {string} text
 * @returns {AptEntry[]}
 */
export function parseOneLine(file, text) {
  /** @type {AptEntry[]} */
  const entries = [];
  for (const raw of text.replace(/\r/g, "").split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const m = /^(\S+)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const options = Object.fromEntries(
      (m[2] ?? "").trim().split(/\s+/).filter(Boolean).map((o) => {
        const i = o.indexOf("=");
        return i < 0 ? [o, ""] : [o.slice(0, i).toLowerCase(), o.slice(i + 1)];
      }),
    );
    entries.push({ file, type: m[1], uri: m[3], suite: m[4], components: m[5].split(/\s+/).filter(Boolean), signedBy: options["signed-by"] });
  }
  return entries;
}

/**
 * Entries of a deb822-style file (*.sources): every type × URI × suite of each enabled paragraph.
 * @param {string} file
 * @param {string} text
 * @returns {AptEntry[]}
 */
export function parseDeb822(file, text) {
  /** @type {AptEntry[]} */
  const entries = [];
  for (const para of text.replace(/\r/g, "").split(/\n\s*\n/)) {
    /** @type {Record<string, string>} */
    const fields = {};
    let last = "";
    for (const line of para.split("\n")) {
      if (line.startsWith("#") || !line.trim()) continue;
      if (/^\s/.test(line)) {
        if (last) fields[last] += " " + line.trim();
        continue;
      }
      const i = line.indexOf(":");
      if (i < 0) continue;
      last = line.slice(0, i).trim().toLowerCase();
      fields[last] = line.slice(i + 1).trim();
    }
    if (/^(no|false|0)$/i.test(fields.enabled ?? "")) continue;
    const list = (/** @type {string} */ name) => (fields[name] ?? "").split(/\s+/).filter(Boolean);
    for (const type of list("types"))
      for (const uri of list("uris"))
        for (const suite of list("suites"))
          entries.push({ file, type, uri, suite, components: list("components"), signedBy: fields["signed-by"] });
  }
  return entries;
}

/**
 * Every entry apt would use, in apt's order: `files` are {name, text} with the main list's
 * name ending in ".list" and the parts' names as found in the parts directory.
 * @param {Array<{ name: string, text: string }>} files
 * @returns {AptEntry[]}
 */
export function aptSourceEntries(files) {
  const usable = /^[A-Za-z0-9_.-]+\.(list|sources)$/;
  return files.flatMap(({ name, text }) => {
    const base = name.split("/").pop();
    if (!usable.test(base)) return [];
    return base.endsWith(".sources") ? parseDeb822(name, text) : parseOneLine(name, text);
  });
}

/**
 * How well an entry looks like Debian's main archive; 0 when it does not at all.
 * @param {AptEntry} e
 */
function score(e) {
  if (e.type !== "deb" && e.type !== "deb-src") return 0;
  if (/^cdrom:/i.test(e.uri)) return 0;
  // Security and point-release updates live elsewhere or carry only a few packages.
  if (/(-security|-updates|\/updates)$/.test(e.suite)) return 0;
  const exactSuite = DEBIAN_SUITES.has(e.suite);
  const familySuite = DEBIAN_SUITES.has(e.suite.split("-")[0]);
  const debianPath = /\/debian\/?$/.test(e.uri);
  const debianKey = /debian-archive-keyring/.test(e.signedBy ?? "");
  if (!familySuite && !debianPath && !debianKey) return 0;
  return (exactSuite ? 8 : 0) + (familySuite ? 4 : 0) + (debianPath ? 2 : 0) + (e.components.includes("main") ? 1 : 0);
}

/**
 * The URI of the entry that best serves Debian's main archive (first of the best), or null.
 * @param {AptEntry[]} entries
 * @returns {string | null}
 */
export function debianArchiveUri(entries) {
  let best = null;
  let bestScore = 0;
  for (const e of entries) {
    const s = score(e);
    if (s > bestScore) (best = e), (bestScore = s);
  }
  return best ? best.uri : null;
}
