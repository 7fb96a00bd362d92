// Public surface of usage: today's totals, read from the limiter's documents.
export { createUsage, type UsageOptions } from "./usage";
