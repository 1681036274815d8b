/**
 * `npm run build`: compiles the standalone executable dist/netlicensing-agent
 * with `bun build --compile`, ships lmdb's native addon beside it (Bun cannot
 * load an addon that lmdb resolves at run time from inside the executable;
 * node-gyp-build looks in `<dir of executable>/prebuilds/<platform>-<arch>/`),
 * writes a SHA-256 checksum file, and checks that the result runs from another
 * directory.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';

const root = join(import.meta.dir, '..');
const dist = join(root, 'dist');
const outfile = join(dist, 'netlicensing-agent');
const platform = `${process.platform}-${process.arch}`;

function run(cmd: string[], cwd = root): string {
  const result = Bun.spawnSync(cmd, { cwd, stdout: 'pipe', stderr: 'pipe' });
  if (result.exitCode !== 0) {
    throw new Error(`${cmd.join(' ')} failed (${result.exitCode}): ${result.stderr.toString()}`);
  }
  return result.stdout.toString().trim();
}

let commit = 'unknown';
try {
  commit = run(['git', 'rev-parse', '--short=12', 'HEAD']);
  if (run(['git', 'status', '--porcelain', '--untracked-files=no']) !== '') commit += '-dirty';
} catch {
  // Not a git checkout (e.g. a source tarball): the version still prints, with an unknown commit.
}

rmSync(join(dist, 'prebuilds'), { recursive: true, force: true });
run([
  process.execPath,
  'build',
  '--compile',
  '--minify-syntax',
  `--define`,
  `NLA_BUILD_COMMIT=${JSON.stringify(commit)}`,
  'src/main.ts',
  '--outfile',
  outfile,
]);

// lmdb's N-API addon (glibc build), found by node-gyp-build next to the executable.
const addonDir = dirname(Bun.resolveSync('@lmdb/lmdb-' + platform + '/package.json', root));
const addon = readdirSync(addonDir).find((f) => f === 'node.napi.glibc.node');
if (!addon) throw new Error(`no N-API lmdb addon in ${addonDir}`);
const prebuilds = join(dist, 'prebuilds', platform);
mkdirSync(prebuilds, { recursive: true });
copyFileSync(join(addonDir, addon), join(prebuilds, addon));

const files = [outfile, join(prebuilds, addon)];
const sums = files
  .map((f) => `${createHash('sha256').update(readFileSync(f)).digest('hex')}  ${f.slice(dist.length + 1)}`)
  .join('\n');
writeFileSync(join(dist, 'SHA256SUMS'), `${sums}\n`);

// Smoke test from another directory: version and a database round trip need the addon.
const version = run([outfile, '--version'], '/');
console.log(`built ${outfile}\n${version}\nchecksums in dist/SHA256SUMS`);
