// node:test reporter that counts leaf tests and prints one closing line: "Summary: N passed, N failed, N skipped".
// With FCVM_TEST_COUNTS set it also appends "passed failed skipped" to that file, so scripts/test.sh can add tiers up.
import { appendFileSync } from 'node:fs';

export default async function* summaryReporter(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures = [];
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const data = event.data;
    // Suites (describe) report as well; count only tests, and a skipped suite as one skipped test.
    if (data.details?.type === 'suite') {
      if (event.type === 'test:pass' && data.skip !== undefined) skipped++;
      continue;
    }
    if (event.type === 'test:fail') {
      failed++;
      failures.push(`${data.file ?? ''} > ${data.name}`);
    } else if (data.skip !== undefined || data.todo !== undefined) skipped++;
    else passed++;
  }
  if (failures.length > 0) yield `\nFailed tests:\n${failures.map((f) => `  - ${f}`).join('\n')}\n`;
  yield `Summary: ${passed} passed, ${failed} failed, ${skipped} skipped\n`;
  if (process.env.FCVM_TEST_COUNTS) appendFileSync(process.env.FCVM_TEST_COUNTS, `${passed} ${failed} ${skipped}\n`);
}
