import { CliError, EXIT } from '../exit-codes.ts';
import type { ActionDef } from '../actions.ts';

// Placeholder wiring until the importer lands (issue 2); replaced by the importer's action.
export const importAssetsAction: ActionDef = {
  name: 'import-assets',
  summary: 'import assets',
  async run() {
    throw new CliError('import-assets is not built yet', EXIT.internal);
  },
};
