export { createDashboard, type DashboardHandler } from './handler';
export type {
  WorkflowHistorySource,
  WorkflowRecordSummary,
  WorkflowTimelineEntry,
  WorkflowTree,
} from './history';
export type { DashboardOptions } from './options';
