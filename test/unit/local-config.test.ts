import { describe, expect, it } from 'vitest'
import { loadLocalConfig } from '../../functions/local/config'

const load = (env: Record<string, string>, root = true) => loadLocalConfig({ DATA_DIR: '/tmp/x', ...env }, { root })

describe('SANDBOX_POSTURE', () => {
  it('defaults to root as root, deployed otherwise, and deployed with SANDBOX_WORKER_UID_BASE', () => {
    expect(load({}).SANDBOX_POSTURE).toBe('root')
    expect(load({}, false).SANDBOX_POSTURE).toBe('deployed')
    expect(load({ SANDBOX_POSTURE: 'auto' }).SANDBOX_POSTURE).toBe('root')
    const deployed = load({ SANDBOX_WORKER_UID_BASE: '64000' })
    expect(deployed).toMatchObject({ SANDBOX_POSTURE: 'deployed', SANDBOX_WORKER_UID_BASE: 64000 })
  })

  it('lambda runs workers under uids from SANDBOX_WORKER_UID_BASE (default 62000)', () => {
    expect(load({ SANDBOX_POSTURE: 'lambda' })).toMatchObject({ SANDBOX_POSTURE: 'lambda', SANDBOX_WORKER_UID_BASE: 62000 })
    expect(load({ SANDBOX_POSTURE: 'lambda', SANDBOX_WORKER_UID_BASE: '65300' }).SANDBOX_WORKER_UID_BASE).toBe(65300)
    expect(load({ SANDBOX_POSTURE: 'deployed' }).SANDBOX_WORKER_UID_BASE).toBeUndefined()
  })

  it('names the variable when it is wrong', () => {
    expect(() => load({ SANDBOX_POSTURE: 'lamda' })).toThrow('Configuration error: SANDBOX_POSTURE must be root, deployed or lambda (or auto)')
    expect(() => load({ SANDBOX_POSTURE: 'root', SANDBOX_WORKER_UID_BASE: '64000' })).toThrow(/SANDBOX_WORKER_UID_BASE .*SANDBOX_POSTURE=root/)
  })
})
