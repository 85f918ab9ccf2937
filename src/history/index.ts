export type { WorkflowTables } from './sql';
export type {
  WorkflowDetail,
  WorkflowFilter,
  WorkflowHistorySource,
  WorkflowPage,
  WorkflowRecordSummary,
  WorkflowTimelineEntry,
  WorkflowTree,
} from './types';
export { Workflows } from './workflows';
