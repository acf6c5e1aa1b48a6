/** VM assets: kernel, initramfs, root filesystem, test image (what `fcvm setup` builds). */
export {
  type AssetKind,
  type AssetPaths,
  type AssetStatus,
  checkAssets,
  type EnsureOptions,
  ensureAssets,
  planAssets,
} from './ensure.js';
export { type LocalImage, resolveLocalImage } from './image-store.js';
export { type AgentInitrdOptions, createAgentInitrd, type InjectedFile, locateAgentBundle } from './initramfs.js';
export type { ProgressListener, SetupEvent } from './progress.js';
export { TEST_IMAGE_REF } from './test-image.js';
