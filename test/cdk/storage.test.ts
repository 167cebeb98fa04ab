import { Match } from 'aws-cdk-lib/assertions'
import { describe, expect, it } from 'vitest'
import { uploadKey, fileKey } from '../../functions/core/files'
import { UPLOAD_ACTIONS } from '../../lib/constructs/api-function'
import { FILES_PREFIX, OBJECT_PREFIXES, STAGED_UPLOAD_EXPIRATION_DAYS, STATE_EXPIRATION_DAYS, UPLOADS_PREFIX } from '../../lib/constructs/storage'
import { buildStack, resourceByPrefix } from './support'

const { template } = buildStack()

describe('table', () => {
  it('is on-demand with pk/sk strings, point-in-time recovery and TTL on expires_at', () => {
    template.resourceCountIs('AWS::DynamoDB::GlobalTable', 1)
    template.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
      Replicas: [Match.objectLike({ PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } })],
    })
  })

  it('is kept when the stack is deleted', () => {
    template.hasResource('AWS::DynamoDB::GlobalTable', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' })
  })
})

describe('bucket', () => {
  const bucket = resourceByPrefix(template, 'AWS::S3::Bucket', 'StorageBucket')

  it('blocks public access, encrypts, and logs access', () => {
    expect(bucket.resource.Properties).toMatchObject({
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      LoggingConfiguration: { DestinationBucketName: { Ref: expect.stringMatching(/^StorageAccessLogs/) } },
    })
  })

  it('expires session state after 35 days (a backstop), staged uploads after a day, and aborts incomplete multipart uploads; files are kept', () => {
    expect(bucket.resource.Properties.LifecycleConfiguration.Rules).toEqual([
      { Id: 'ExpireSessionState', Prefix: 'state/', ExpirationInDays: 35, Status: 'Enabled' },
      { Id: 'ExpireStagedUploads', Prefix: 'uploads/', ExpirationInDays: 1, Status: 'Enabled' },
      { Id: 'AbortIncompleteUploads', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' },
    ])
    // Longer than the longest session idle time a plan may set (30 days).
    expect(STATE_EXPIRATION_DAYS).toBeGreaterThan(30)
    // Longer than any upload URL lives (PRESIGNED_URL_SECONDS is at most SigV4's 7 days, but the
    // API's role credentials end its URLs within hours; 15 minutes by default).
    expect(STAGED_UPLOAD_EXPIRATION_DAYS).toBe(1)
  })

  it('stages presigned uploads under a prefix of their own, which no rule shares with files/', () => {
    // The API's keys and the bucket's prefixes agree.
    expect(uploadKey('org_a', 'file_1')).toBe(`${UPLOADS_PREFIX}org_a/file_1`)
    expect(fileKey('org_a', 'file_1')).toBe(`${FILES_PREFIX}org_a/file_1`)
    expect(OBJECT_PREFIXES).not.toContain(UPLOADS_PREFIX)
    const rules = bucket.resource.Properties.LifecycleConfiguration.Rules as { Prefix?: string; ExpirationInDays?: number }[]
    // Nothing expires files/: neither a rule on it nor one without a prefix.
    expect(rules.filter((r) => r.ExpirationInDays !== undefined && (!r.Prefix || FILES_PREFIX.startsWith(r.Prefix)))).toEqual([])
  })

  it('has no CORS rule unless files.corsOrigins lists origins', () => {
    expect(bucket.resource.Properties.CorsConfiguration).toBeUndefined()
    const origins = ['https://app.example.com', 'http://localhost:5173']
    const withCors = buildStack({ interpreter: { files: { corsOrigins: origins } } })
    const b = resourceByPrefix(withCors.template, 'AWS::S3::Bucket', 'StorageBucket')
    expect(b.resource.Properties.CorsConfiguration).toEqual({
      CorsRules: [
        {
          Id: 'PresignedBrowserTransfers',
          AllowedOrigins: origins,
          AllowedMethods: ['PUT', 'GET'],
          AllowedHeaders: ['content-type', 'content-md5', 'content-disposition', 'x-amz-*'],
          ExposedHeaders: ['ETag'],
          MaxAge: 3600,
        },
      ],
    })
  })

  it('refuses requests without TLS', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucket.logicalId },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    })
  })

  it('keeps every bucket private', () => {
    for (const b of Object.values(template.findResources('AWS::S3::Bucket'))) {
      expect(b.Properties.PublicAccessBlockConfiguration.RestrictPublicBuckets).toBe(true)
    }
  })
})

describe('staged uploads (uploads/*)', () => {
  const stages = [
    ['without schedules', template],
    ['with schedules', buildStack({ interpreter: { schedules: [{ name: 'n', schedule: 'rate(1 day)', organizationId: 'org_a', assistantId: 'asst_a', inputs: [{ role: 'user', content: 'hi' }] }] } }).template],
  ] as const

  it.each(stages)('only the API role may touch them, with exactly GetObject, PutObject and DeleteObject (%s)', (_, t) => {
    const b = resourceByPrefix(t, 'AWS::S3::Bucket', 'StorageBucket')
    const apiFn = resourceByPrefix(t, 'AWS::Lambda::Function', 'ApiFunction')
    const apiRole = apiFn.resource.Properties.Role['Fn::GetAtt'][0]
    const grants = Object.values(t.findResources('AWS::IAM::Policy')).flatMap((p) =>
      (p.Properties.PolicyDocument.Statement as any[])
        .filter((st) => JSON.stringify(st.Resource).includes('uploads/'))
        .map((st) => ({ roles: p.Properties.Roles, statement: st })),
    )
    expect(grants).toEqual([
      {
        roles: [{ Ref: apiRole }],
        statement: {
          Sid: 'StagedUploads',
          Effect: 'Allow',
          Action: ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
          Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [b.logicalId, 'Arn'] }, '/uploads/*']] },
        },
      },
    ])
    // The minimum the flow needs: PutObject for the client's presigned PUT, GetObject for
    // HeadObject and the CopyObject source, DeleteObject for the staging object afterwards.
    expect([...UPLOAD_ACTIONS].sort()).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:PutObject'])
    // No bucket-wide right (ListBucket, s3:*), no other role, and the sandbox's S3 endpoint never reaches it.
    const text = JSON.stringify(t.toJSON())
    expect(text).not.toContain('s3:ListBucket')
    for (const endpoint of Object.values(t.findResources('AWS::EC2::VPCEndpoint'))) {
      expect(JSON.stringify(endpoint.Properties.PolicyDocument)).not.toContain('uploads/')
    }
    for (const policy of Object.values(t.findResources('AWS::S3::BucketPolicy'))) {
      expect(JSON.stringify(policy.Properties.PolicyDocument)).not.toContain('uploads/')
    }
  })
})
