// Preloaded by bunfig.toml for every `bun test` run: what must happen once, after the last test file.
import { afterAll } from 'bun:test';
import { removeTempDirs } from './helpers.ts';

afterAll(removeTempDirs);
