/** Replaced at bundle time by scripts/build.mjs; the fallback serves `tsx` runs from source. */
declare const __FCVM_VERSION__: string | undefined;

export const FCVM_VERSION: string = typeof __FCVM_VERSION__ === 'string' ? __FCVM_VERSION__ : '0.1.0-dev';
