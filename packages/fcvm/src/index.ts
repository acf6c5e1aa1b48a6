/** The fcvm library: what the CLI commands (and other programs) call. */

export {
  type AssetPaths,
  type AssetStatus,
  checkAssets,
  createAgentInitrd,
  ensureAssets,
  type InjectedFile,
  locateAgentBundle,
  resolveLocalImage,
  TEST_IMAGE_REF,
} from './assets/index.js';
export { type FcvmConfig, loadConfig } from './config.js';
export { type DataDir, dataDir, defaultDataDirRoot, ensureDataDir } from './data-dir.js';
export { FcvmError, type FcvmErrorCode, isFcvmError } from './errors.js';
export type { VmRecord } from './state/record.js';
export { Registry } from './state/registry.js';
