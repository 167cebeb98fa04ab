import { Match } from 'aws-cdk-lib/assertions'
import { describe, expect, it } from 'vitest'
import { STATE_EXPIRATION_DAYS } from '../../lib/constructs/storage'
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

  it('expires session state after 35 days (a backstop) and aborts incomplete multipart uploads; files are kept', () => {
    expect(bucket.resource.Properties.LifecycleConfiguration.Rules).toEqual([
      { Id: 'ExpireSessionState', Prefix: 'state/', ExpirationInDays: 35, Status: 'Enabled' },
      { Id: 'AbortIncompleteUploads', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' },
    ])
    // Longer than the longest session idle time a plan may set (30 days).
    expect(STATE_EXPIRATION_DAYS).toBeGreaterThan(30)
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
