// Public surface of the usage counters.
export { createUsage, type RuntimeUsage, type UsageDoc, type UsageOptions } from "./usage";
