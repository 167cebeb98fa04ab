import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb'
import type { ApiKeyRecord, KeyStore } from '../core/ports'

/** API keys in the service's table: pk = apikey#<sha256>, sk = apikey. */
export class DynamoKeyStore implements KeyStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const out = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: `apikey#${hash}`, sk: 'apikey' }, ConsistentRead: true }),
    )
    const item = out.Item
    if (!item || item.revoked_at) return undefined
    return { organizationId: String(item.organization_id), keyId: String(item.key_id) }
  }

  async put(hash: string, record: ApiKeyRecord): Promise<void> {
    await this.doc.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          pk: `apikey#${hash}`,
          sk: 'apikey',
          organization_id: record.organizationId,
          key_id: record.keyId,
          created_at: new Date().toISOString(),
        },
      }),
    )
  }
}
