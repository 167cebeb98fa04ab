import { Aws } from 'aws-cdk-lib'
import type * as ec2 from 'aws-cdk-lib/aws-ec2'
import * as route53resolver from 'aws-cdk-lib/aws-route53resolver'
import { Construct } from 'constructs'

/**
 * The names the sandbox may resolve: the Regional S3 endpoint, path style and virtual-hosted
 * style. The functions' S3 client (AWS SDK v3, defaults: no global us-east-1 endpoint, no
 * dualstack, FIPS or acceleration) signs URLs for `<bucket>.s3.<region>.<suffix>` or
 * `s3.<region>.<suffix>/<bucket>`. The global `s3.amazonaws.com` names are left out: the SDK does
 * not use them by default, and outside us-east-1 the gateway endpoint could not route them.
 */
export const SANDBOX_ALLOWED_DOMAINS = [`s3.${Aws.REGION}.${Aws.URL_SUFFIX}`, `*.s3.${Aws.REGION}.${Aws.URL_SUFFIX}`]
/** Lower priority numbers are evaluated first; the first matching rule decides. */
export const ALLOW_RULE_PRIORITY = 100
export const BLOCK_RULE_PRIORITY = 200
/** Among rule groups on the VPC (101-9899); Firewall Manager's own groups come before or after. */
export const RULE_GROUP_ASSOCIATION_PRIORITY = 101

export interface SandboxDnsFirewallProps {
  readonly vpc: ec2.IVpc
}

/**
 * Route 53 Resolver DNS Firewall on the sandbox VPC: S3 names resolve, every other name gets
 * NXDOMAIN. The VPC resolver is reachable without any route or security-group rule, so without
 * this a block could carry data out in the query names it asks for (e.g. `<data>.attacker.example`).
 *
 * - ALLOW (priority 100) the Regional S3 names, trusting their CNAME chain: S3's answers are
 *   CNAMEs to other amazonaws.com names that the catch-all would otherwise block. Those names
 *   sit in AWS's zones, so no one else's name server sees the query.
 * - BLOCK `*` (priority 200) with NXDOMAIN.
 * - Fail closed (FirewallFailOpen DISABLED): if the firewall cannot evaluate a query, the query
 *   is refused rather than resolved.
 */
export class SandboxDnsFirewall extends Construct {
  readonly allowList: route53resolver.CfnFirewallDomainList
  readonly blockList: route53resolver.CfnFirewallDomainList
  readonly ruleGroup: route53resolver.CfnFirewallRuleGroup
  readonly association: route53resolver.CfnFirewallRuleGroupAssociation
  readonly config: route53resolver.CfnFirewallConfig

  constructor(scope: Construct, id: string, props: SandboxDnsFirewallProps) {
    super(scope, id)

    this.allowList = new route53resolver.CfnFirewallDomainList(this, 'S3Names', {
      domains: SANDBOX_ALLOWED_DOMAINS,
    })
    this.blockList = new route53resolver.CfnFirewallDomainList(this, 'AllNames', { domains: ['*'] })

    this.ruleGroup = new route53resolver.CfnFirewallRuleGroup(this, 'RuleGroup', {
      firewallRules: [
        {
          priority: ALLOW_RULE_PRIORITY,
          action: 'ALLOW',
          firewallDomainListId: this.allowList.attrId,
          firewallDomainRedirectionAction: 'TRUST_REDIRECTION_DOMAIN',
        },
        {
          priority: BLOCK_RULE_PRIORITY,
          action: 'BLOCK',
          blockResponse: 'NXDOMAIN',
          firewallDomainListId: this.blockList.attrId,
        },
      ],
    })

    this.association = new route53resolver.CfnFirewallRuleGroupAssociation(this, 'Association', {
      firewallRuleGroupId: this.ruleGroup.attrId,
      vpcId: props.vpc.vpcId,
      priority: RULE_GROUP_ASSOCIATION_PRIORITY,
      mutationProtection: 'DISABLED',
    })

    this.config = new route53resolver.CfnFirewallConfig(this, 'FailClosed', {
      resourceId: props.vpc.vpcId,
      firewallFailOpen: 'DISABLED',
    })
  }
}
