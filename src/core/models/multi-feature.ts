/**
 * Multi-Feature (`MultiFeature`), API spec §6.5: one list per FEATURE
 * template (the template number is the feature id, its name the feature
 * name), valid when an active license of it exists. No item-level `valid`.
 */
import type { WireList } from '../envelope.ts';
import { bool, licenseType, templateType, type ModelContext, type ModelResult } from './common.ts';

export function validateMultiFeature(ctx: ModelContext): ModelResult {
  const lists: WireList[] = ctx.templates
    .filter((template) => templateType(template) === 'FEATURE')
    .map((template) => {
      const licensed = ctx.licenses.some(
        (view) => view.template.number === template.number && licenseType(view) === 'FEATURE',
      );
      return {
        name: template.number,
        properties: [
          ['valid', bool(licensed)],
          ['featureName', template.props['name'] ?? template.number],
        ],
        lists: [],
      };
    });
  return { properties: [], lists, warningLevel: 'GREEN', events: [], infos: [] };
}
