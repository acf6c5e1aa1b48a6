import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HandshakeError, JsonArrayFramer, parseRegions } from '../../../src/uffd/handshake.js';

// Byte for byte what Firecracker 1.12+ sends (serde, compact): two regions around the MMIO gap.
const FC_1_12 =
  '[{"base_host_virt_addr":140185938444288,"size":3221225472,"offset":0,"page_size":4096,"page_size_kib":4096},' +
  '{"base_host_virt_addr":140182717218816,"size":1073741824,"offset":3221225472,"page_size":4096,"page_size_kib":4096}]';

describe('JsonArrayFramer', () => {
  test('completes only when the top-level array closes, however the bytes are split', () => {
    for (let split = 1; split < FC_1_12.length; split += 17) {
      const framer = new JsonArrayFramer();
      assert.equal(framer.push(Buffer.from(FC_1_12.slice(0, split))), false);
      assert.equal(framer.push(Buffer.from(FC_1_12.slice(split))), true);
      assert.equal(framer.text(), FC_1_12);
    }
  });

  test('ignores brackets inside strings and bytes after the array', () => {
    const framer = new JsonArrayFramer();
    assert.equal(framer.push(Buffer.from('[{"note":"a ] \\" [ b"}')), false);
    assert.equal(framer.push(Buffer.from(']garbage')), true);
    assert.equal(framer.text(), '[{"note":"a ] \\" [ b"}]');
  });

  test('rejects what cannot be a handshake', () => {
    assert.throws(() => new JsonArrayFramer().push(Buffer.from('{"a":1}')), HandshakeError);
    const framer = new JsonArrayFramer();
    assert.throws(() => {
      for (let i = 0; i < 2000; i++) framer.push(Buffer.alloc(1024, 0x5b));
    }, /exceeds/);
  });
});

describe('parseRegions', () => {
  test('reads Firecracker 1.12+ regions', () => {
    assert.deepEqual(parseRegions(FC_1_12), [
      { base: 140185938444288, size: 3221225472, offset: 0, pageSize: 4096 },
      { base: 140182717218816, size: 1073741824, offset: 3221225472, pageSize: 4096 },
    ]);
  });

  test('reads older bodies: page_size_kib only (1.7-1.11, in bytes) and no page size (before 1.7: 4 KiB)', () => {
    const v17 = parseRegions('[{"base_host_virt_addr":2097152,"size":4194304,"offset":0,"page_size_kib":2097152}]');
    assert.equal(v17[0]?.pageSize, 2097152);
    const v11 = parseRegions('[{"base_host_virt_addr":4096,"size":8192,"offset":0}]');
    assert.equal(v11[0]?.pageSize, 4096);
  });

  test('tolerates fields a newer Firecracker may add', () => {
    assert.equal(parseRegions('[{"base_host_virt_addr":4096,"size":4096,"offset":0,"new_field":true}]').length, 1);
  });

  test('refuses unusable regions with a reason', () => {
    const cases: Array<[string, RegExp]> = [
      ['[]', /invalid/],
      ['[{"size":4096,"offset":0}]', /base_host_virt_addr/],
      ['[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":65536}]', /page size 65536/],
      ['[{"base_host_virt_addr":4097,"size":4096,"offset":0}]', /not aligned/],
      [
        '[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":2097152}]',
        /two different/,
      ],
      [
        '[{"base_host_virt_addr":4096,"size":8192,"offset":0},{"base_host_virt_addr":8192,"size":4096,"offset":8192}]',
        /overlap/,
      ],
      ['[{"base_host_virt_addr":18446744073709547520,"size":4096,"offset":0}]', /beyond/],
      ['[{"base_host_virt_addr":4096,', /not valid JSON/],
    ];
    for (const [text, reason] of cases) assert.throws(() => parseRegions(text), reason, text);
  });
});
