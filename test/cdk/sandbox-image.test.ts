// The sandbox image must reach Lambda as one single-platform image manifest: Lambda refuses an
// image index ("The image manifest, config or layer media type ... is not supported"), which
// BuildKit produces when it attaches provenance or SBOM attestations.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { SANDBOX_IMAGE_BUILD } from '../../lib/constructs/sandbox'
import { projectPath } from '../../lib/paths'
import { buildStack } from './support'

describe('sandbox image build', () => {
  it('is published as one linux/arm64 image, loaded into the local store (asset manifest)', () => {
    const { app } = buildStack()
    const assembly = app.synth()
    const manifest = JSON.parse(readFileSync(path.join(assembly.directory, 'CodeInterpreter.assets.json'), 'utf8'))
    const images = Object.values(manifest.dockerImages ?? {}) as { displayName: string; source: Record<string, unknown> }[]
    expect(images.map((i) => i.displayName)).toEqual(['Sandbox/Function/AssetImage'])
    // What cdk-assets turns into `docker build --platform linux/arm64 --output=type=docker`.
    expect(images[0]!.source).toMatchObject({ platform: 'linux/arm64', dockerOutputs: ['type=docker'] })
    expect(SANDBOX_IMAGE_BUILD.outputs).toEqual(['type=docker'])
  })

  it('runs with default attestations off: the pinned CDK CLI builds with BUILDX_NO_DEFAULT_ATTESTATIONS=1', () => {
    // The asset manifest has no attestation setting; the CLI's asset publisher sets this for
    // every `docker build`. A CLI upgrade that drops it must fail here, not at deploy.
    const require = createRequire(import.meta.url)
    const cliPackage = require.resolve('aws-cdk/package.json', { paths: [projectPath()] })
    const pinned = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')).devDependencies['aws-cdk']
    expect(JSON.parse(readFileSync(cliPackage, 'utf8')).version).toBe(pinned)
    const cli = readFileSync(path.join(path.dirname(cliPackage), 'lib', 'index.js'), 'utf8')
    const build = /async build\(options\)\s*\{\s*const buildCommand = \[\s*"build",[\s\S]*?\n\s{6}\}\n/.exec(cli)
    expect(build, 'the Docker asset build function of the CDK CLI').not.toBeNull()
    expect(build![0]).toMatch(/options\.outputs \? options\.outputs\.map\(\(output\) => \[`--output=\$\{output\}`\]\)/)
    expect(build![0]).toMatch(/options\.platform \? \["--platform", options\.platform\]/)
    expect(build![0]).toMatch(/env:\s*\{\s*BUILDX_NO_DEFAULT_ATTESTATIONS:\s*"1"/)
  })

  it("builds matplotlib's font cache into the image, where the runner looks for it", () => {
    // Each zygote's fresh config dir starts from this copy (python-runtime/sandbox/standbys.py).
    const dockerfile = readFileSync(projectPath('python-runtime/Dockerfile'), 'utf8')
    const dir = /MPLCONFIGDIR=(\S+) python -c "import matplotlib\.font_manager"/.exec(dockerfile)?.[1]
    expect(dir, 'a RUN that builds the font cache').toBeTruthy()
    expect(dockerfile).toMatch(new RegExp(`SANDBOX_MPL_CACHE=${dir!.replace(/[/.]/g, '\\$&')}\\b`))
  })

  it('starts from a base image pinned by digest', () => {
    const dockerfile = readFileSync(projectPath('python-runtime/Dockerfile'), 'utf8')
    const froms = dockerfile.split('\n').filter((line) => /^\s*FROM\s/i.test(line))
    expect(froms).toEqual([expect.stringMatching(/^FROM public\.ecr\.aws\/lambda\/python:3\.13@sha256:[0-9a-f]{64}$/)])
  })
})
