export { createDashboard, type DashboardHandler } from './handler';
export type { DashboardOptions } from './options';
