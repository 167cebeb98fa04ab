/** Lambda entry point of the API function (see lib/constructs/api-function.ts). */
import { loadApiConfig } from '../config'
import { createApiHandler } from './app'
import { createDeps } from './deps'

export const handler = createApiHandler(createDeps(loadApiConfig()))
