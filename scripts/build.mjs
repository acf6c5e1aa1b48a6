// Bundles the host CLI and the guest agent with esbuild. Run by ./fcvm on first use and by the tests.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

mkdirSync('build', { recursive: true });
const version = JSON.parse(readFileSync(new URL('../packages/fcvm/package.json', import.meta.url), 'utf8')).version;

// Chunks of an earlier build would pile up: each build writes its own.
for (const name of readdirSync('build', { withFileTypes: true })) {
  if (name.isFile() && name.name.startsWith('chunk-')) rmSync(join('build', name.name));
}

await Promise.all([
  // One build with code splitting: `fcvm --version` loads a few kB, each command only what it imports.
  // The UFFD memory server runs each clone in a worker thread; the worker needs its own entry point.
  // Chunks sit beside the entries in build/, so paths relative to import.meta.url hold in all of them.
  build({
    entryPoints: {
      fcvm: 'packages/fcvm/src/cli/bin.ts',
      'uffd-worker': 'packages/fcvm/src/uffd/clone-worker.ts',
    },
    outdir: 'build',
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    splitting: true,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // koffi ships native binaries: it must be loaded from node_modules, not bundled.
    external: ['koffi'],
    banner: {
      js: "import { createRequire as __fcvmCreateRequire } from 'node:module'; const require = __fcvmCreateRequire(import.meta.url);",
    },
    define: { __FCVM_VERSION__: JSON.stringify(version) },
    sourcemap: 'linked',
    logLevel: 'warning',
  }),
  build({
    entryPoints: ['packages/fc-agent/src/main.ts'],
    outfile: 'build/fc-agent.mjs',
    bundle: true,
    platform: 'node',
    // The guest runs Debian bookworm's Node 18.
    target: 'node18',
    format: 'esm',
    logLevel: 'warning',
  }),
]);
