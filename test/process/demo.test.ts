/**
 * The README's main job, run as a newcomer runs it: a real process with real worker threads,
 * which must do its work, report it, and exit 0 by itself.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const demoMain = fileURLToPath(new URL('../../apps/demo/dist/main.js', import.meta.url));

function run(file: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file], { env: { ...process.env, ...env }, timeout: 50_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('demo node process', () => {
  it('runs sessions on several workers, discards a failed turn, and stops gracefully', async () => {
    const { code, stdout, stderr } = await run(demoMain, { DEMO_USERS: '50', DEMO_OPS: '10', DEMO_WORKERS: '3' });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('50 users made 550 calls');
    expect(stdout).toMatch(/caviar in cart\? false; updates still \d+/);
    expect(stdout).toContain('reached the caller as Error DECLINED');
    const workerLines = stdout.split('\n').filter((line) => /^ {2}worker \d+: /.test(line));
    expect(workerLines).toHaveLength(3);
    const sessions = workerLines.map((line) => Number(/(\d+) sessions active/.exec(line)![1]));
    // 50 users × (cart + profile), spread by bucket over the workers.
    expect(sessions.reduce((a, b) => a + b, 0)).toBe(100);
    expect(stdout).toContain('node stopped gracefully');
  });
});
