// Bundles the host CLI and the guest agent with esbuild. Run by ./fcvm on first use and by the tests.
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const version = JSON.parse(readFileSync(new URL('../packages/fcvm/package.json', import.meta.url), 'utf8')).version;

await Promise.all([
  // The UFFD memory server runs each clone in a worker thread; the worker needs its own entry point.
  ...[
    ['packages/fcvm/src/cli/bin.ts', 'build/fcvm.mjs'],
    ['packages/fcvm/src/uffd/clone-worker.ts', 'build/uffd-worker.mjs'],
  ].map(([entry, outfile]) =>
    build({
      entryPoints: [entry],
      outfile,
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
  ),
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
