/**
 * `npm run build`: compiles the standalone executable dist/netlicensing-agent
 * with `bun build --compile`, ships lmdb's native addon beside it (Bun cannot
 * load an addon that lmdb resolves at run time from inside the executable;
 * node-gyp-build looks in `<dir of executable>/prebuilds/<platform>-<arch>/`),
 * writes a SHA-256 checksum file, and checks that the result runs from another
 * directory. `--out=<dir>` writes there instead of dist/.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';

const root = join(import.meta.dir, '..');
// `--out=<dir>`: build somewhere else than dist/ (the packaging test builds into a temporary directory).
const outOption = process.argv.find((a) => a.startsWith('--out='))?.slice('--out='.length);
const dist = outOption ? resolve(outOption) : join(root, 'dist');
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

/**
 * ordered-binary (lmdb's key codec) builds a string decoder with `new Function`
 * from the source text of one of its functions, which refers to the module
 * variable `position`. The bundler renames that variable when another module
 * has a `position` too, and the generated code then fails on non-ASCII keys
 * ("position4 is not defined"). Giving the variable a unique name keeps source
 * text and bundle in agreement.
 */
const orderedBinaryFix: import('bun').BunPlugin = {
  name: 'ordered-binary-position',
  setup(build) {
    build.onLoad({ filter: /ordered-binary[\\/]index\.js$/ }, async ({ path }) => {
      const source = await Bun.file(path).text();
      return { contents: source.replace(/(?<![.\w$])position\b(?!\s*:)/g, 'orderedBinaryPosition'), loader: 'js' };
    });
  },
};

const result = await Bun.build({
  // Workers are extra entries so a compiled executable can start them without
  // re-running the whole program: PC/SC (src/card/pcsc.ts) and the import's
  // parser thread (src/importer/read-batches.ts).
  entrypoints: [join(root, 'src/main.ts'), join(root, 'src/card/pcsc-worker.ts'), join(root, 'src/importer/read-worker.ts')],
  compile: { outfile },
  target: 'bun',
  minify: { syntax: true },
  define: { NLA_BUILD_COMMIT: JSON.stringify(commit) },
  plugins: [orderedBinaryFix],
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  throw new Error('bun build --compile failed');
}

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

// Smoke test from another directory: the version, and a database written and read
// back with non-ASCII numbers (needs the addon and the key codec).
const version = run([outfile, '--version'], '/');
const smoke = mkdtempSync(join(tmpdir(), 'nla-build-smoke-'));
try {
  run([outfile, '--action=import-assets', `--input=${join(root, 'demo')}`], smoke);
  const status = run([outfile, '--action=status'], smoke);
  if (!/licensees/i.test(status)) throw new Error(`compiled status printed no licensees:\n${status}`);
} finally {
  rmSync(smoke, { recursive: true, force: true });
}
console.log(`built ${outfile}\n${version}\nsmoke test (import + status from another directory) passed\nchecksums in ${join(dist, 'SHA256SUMS')}`);
