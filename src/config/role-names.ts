export const ROLE_NAMES = ['bootstrap', 'worker', 'proxy', 'client'] as const
export type RoleName = typeof ROLE_NAMES[number]
