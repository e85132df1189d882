/**
 * systemd integration: unit templates, generation into the unit directory, and the
 * activation the per-resource path units run. Design: docs/systemd.md.
 */
export { activate, decide, type ActivationResult, type Decision } from './activate.js';
export { DEFAULT_SCRIPT_DIR, DEFAULT_UNIT_DIR, resolveConfig, resourceVars, type SystemdConfig } from './config.js';
export { EscapeError, escapePath, escapeSpecifiers, execArgument, unescapePath } from './escape.js';
export {
  checkUnitName, commitResource, generatedResources, GenerateError, isInstalledUnit, planResource, resolveUnitSetting,
  type CommitReport,
} from './generate.js';
export { isKeyword, parseMarkers, referencedUnits, type UnitMarkers } from './markers.js';
export {
  formatStatus, NONE, parseStatus, TRIGGER_FILE, readSettings, touchTrigger, startUnitKey, statusKey, stopUnitKey, wantKey,
  type ActivationStatus, type SystemdSettings,
} from './settings.js';
export { run, Systemctl, type RunResult, type SystemctlOptions } from './systemctl.js';
export {
  matchName, packageTemplateDir, TemplateError, TemplateLibrary, templateSearchPath, UNIT_SUFFIXES,
  type RenderedUnit, type Template, type TemplateVars,
} from './templates.js';
export { verifyUnits, type VerifyOptions, type VerifyResult } from './verify.js';
