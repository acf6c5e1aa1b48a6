// Fails (exit 1) when a source file imports against the layering in docs/ARCHITECTURE.md:
//   - packages/protocol imports nothing of ours (only node: built-ins and npm packages);
//   - the guest agent (packages/fc-agent) never imports the host (packages/fcvm);
//   - inside the host, nothing outside src/cli/ imports src/cli/;
//   - koffi (native calls) is imported only in src/sys/;
//   - child processes are started only by src/util/subprocess.ts (type imports are fine).
// Run by scripts/test.sh; `node scripts/check-layers.mjs` prints each violation with file and line.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const sources = {
  protocol: join(root, 'packages/protocol/src'),
  agent: join(root, 'packages/fc-agent/src'),
  host: join(root, 'packages/fcvm/src'),
};

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (/\.(ts|mts|js|mjs)$/.test(entry.name)) yield path;
  }
}

// Static imports and re-exports, dynamic import(), and require() of a literal specifier.
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*|\bRequire\s*\(\s*)['"]([^'"]+)['"]/g;

function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const found = [];
  for (const match of text.matchAll(IMPORT)) {
    const line = text.slice(0, match.index).split('\n').length;
    const lineText = text.split('\n')[line - 1].trim();
    // Comments may name modules; they do not import them.
    if (lineText.startsWith('//') || lineText.startsWith('*') || lineText.startsWith('/*')) continue;
    const statement = text.slice(text.lastIndexOf('import', match.index), match.index);
    found.push({ specifier: match[1], line, typeOnly: /^import\s+type\b/.test(statement) });
  }
  return found;
}

const isInside = (path, dir) => !relative(dir, path).startsWith('..');
const resolveRelative = (file, specifier) => resolve(dirname(file), specifier);

function violation(layer, file, { specifier, typeOnly }) {
  const local = specifier.startsWith('.');
  const target = local ? resolveRelative(file, specifier) : null;
  if (specifier === 'koffi' || specifier.startsWith('koffi/')) {
    if (!(layer === 'host' && isInside(file, join(sources.host, 'sys'))))
      return 'koffi is used only in packages/fcvm/src/sys/';
  }
  if (layer === 'host' && (specifier === 'node:child_process' || specifier === 'child_process') && !typeOnly) {
    if (file !== join(sources.host, 'util', 'subprocess.ts'))
      return 'subprocesses are started only by src/util/subprocess.ts';
  }
  if (layer === 'protocol') {
    if (specifier.startsWith('@fcvm/') || specifier === 'fcvm') return 'the protocol imports nothing of ours';
    if (local && !isInside(target, sources.protocol)) return 'the protocol imports nothing of ours';
  }
  if (layer === 'agent') {
    if (specifier === 'fcvm' || specifier.startsWith('fcvm/')) return 'the agent never imports the host';
    if (local && !isInside(target, sources.agent)) return 'the agent imports only itself and @fcvm/protocol';
  }
  if (layer === 'host' && local) {
    const cli = join(sources.host, 'cli');
    if (isInside(target, cli) && !isInside(file, cli)) return 'nothing outside src/cli/ imports src/cli/';
    if (!isInside(target, sources.host)) return 'the host imports other packages by name, not by path';
  }
  return null;
}

let failures = 0;
for (const [layer, dir] of Object.entries(sources)) {
  for (const file of walk(dir)) {
    for (const found of importsOf(file)) {
      const reason = violation(layer, file, found);
      if (reason) {
        failures++;
        process.stderr.write(`${relative(root, file)}:${found.line}: imports '${found.specifier}': ${reason}.\n`);
      }
    }
  }
}
if (failures > 0) {
  process.stderr.write(`check-layers: ${failures} layering violation(s); see docs/ARCHITECTURE.md.\n`);
  process.exit(1);
}
