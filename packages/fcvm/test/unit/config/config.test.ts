import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig, parseConfig } from '../../../src/config.js';
import { dataDir, defaultDataDirRoot } from '../../../src/data-dir.js';
import { isFcvmError } from '../../../src/errors.js';
import { tempDataDir } from '../../helpers/cli.js';

describe('config and data dir', () => {
  const tmp = tempDataDir('fcvm-config-');
  after(() => tmp.cleanup());

  test('defaults without a config file', () => {
    const config = loadConfig(undefined, { HOME: tmp.path, XDG_CONFIG_HOME: join(tmp.path, 'none') });
    assert.equal(config.default_hypervisor, 'auto');
    assert.equal(config.rootfs.suite, 'bookworm');
  });

  test('a config file sets the mirror, backend and data dir', () => {
    const path = join(tmp.path, 'config.toml');
    writeFileSync(
      path,
      'data_dir = "/srv/fcvm"\ndefault_hypervisor = "qemu"\n[rootfs]\nmirror = "http://mirror.example/debian"\n',
    );
    const config = loadConfig(undefined, { FCVM_CONFIG: path, HOME: tmp.path });
    assert.equal(config.default_hypervisor, 'qemu');
    assert.equal(config.rootfs.mirror, 'http://mirror.example/debian');
    assert.equal(defaultDataDirRoot({}, config.data_dir), '/srv/fcvm');
    assert.equal(defaultDataDirRoot({ FCVM_DATA_DIR: '/x' }, config.data_dir), '/x');
  });

  test('unknown keys and bad TOML are one-sentence config errors', () => {
    for (const text of ['[rootfs]\nmirorr = "x"\n', 'default_hypervisor = "xen"\n', 'not toml at all =']) {
      assert.throws(
        () => parseConfig(text, 'test.toml'),
        (err) => isFcvmError(err) && err.code === 'CONFIG' && err.exitStatus === 2,
      );
    }
  });

  test('an explicit config path that does not exist is an error', () => {
    assert.throws(() => loadConfig(join(tmp.path, 'missing.toml')), /does not exist/);
  });

  test('layout', () => {
    const dir = dataDir('/d');
    assert.equal(dir.vmDir('vm-1'), '/d/vms/vm-1');
    assert.equal(dir.snapshotDir('s'), '/d/snapshots/s');
    assert.equal(dir.state, '/d/state');
  });
});
