/** What every command receives: resolved paths and config, created once per invocation. */
import { type FcvmConfig, loadConfig } from '../config.js';
import { checkDataDirRoot, type DataDir, dataDir, defaultDataDirRoot } from '../data-dir.js';
import { Registry } from '../state/registry.js';

export interface CliContext {
  readonly config: FcvmConfig;
  readonly dataDir: DataDir;
  /** Opens (and creates) the registry on first use. */
  registry(): Registry;
}

export function createContext(configPath?: string): CliContext {
  const config = loadConfig(configPath);
  const root = defaultDataDirRoot(process.env, config.data_dir);
  checkDataDirRoot(root);
  const dir = dataDir(root);
  let registry: Registry | undefined;
  return {
    config,
    dataDir: dir,
    registry: () => {
      registry ??= new Registry(dir.state);
      return registry;
    },
  };
}
