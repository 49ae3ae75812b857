// Validates a project create/update input into complete settings, with messages that name the field.
import { applyProjectInput, Project, type ProjectInput, UsherError, validator } from '@usher/protocol';
import Type from 'typebox';
import type { ProjectSettings } from '../storage/records.ts';

const settingsValidator = validator(Type.Omit(Project, ['createdAt', 'updatedAt']));

export function validateProject(base: ProjectSettings | null, input: ProjectInput): ProjectSettings {
  const settings = applyProjectInput(base, input);
  const result = settingsValidator.parse(settings);
  if (!result.ok) throw new UsherError('BAD_REQUEST', `project settings: ${result.message}`);
  for (const [region, pool] of Object.entries(settings.regions)) {
    if (pool.min > pool.max) {
      throw new UsherError(
        'BAD_REQUEST',
        `regions.${region}: min (${pool.min}) must not be greater than max (${pool.max})`,
      );
    }
  }
  if (!settings.regions[settings.defaultRegion]) {
    throw new UsherError(
      'BAD_REQUEST',
      `defaultRegion "${settings.defaultRegion}" is not one of regions (${Object.keys(settings.regions).join(', ')})`,
    );
  }
  return settings;
}
