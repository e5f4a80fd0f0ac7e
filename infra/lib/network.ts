import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** Properties of {@link Network}. */
export interface NetworkProps {
  /** Availability zones. Default 2 (each zone adds one ENI per interface endpoint, billed hourly). */
  readonly maxAzs?: number;
  /** Key of the flow log group. */
  readonly logKey: kms.IKey;
  /** Flow log retention. Default one year. */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * A VPC with private isolated subnets only: no internet gateway, no NAT. Everything the functions and the
 * Batch hosts call is reached through VPC endpoints (S3 as a gateway; ECR, ECS, CloudWatch Logs, STS,
 * Batch and Lambda as interfaces), and all traffic is recorded in flow logs.
 */
export class Network extends Construct {
  public readonly vpc: ec2.Vpc;
  /** The private subnets everything runs in. */
  public readonly subnets: ec2.SubnetSelection;
  /** Flow log destination. */
  public readonly flowLogGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    this.subnets = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED };
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: props.maxAzs ?? 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 20 }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      // Nothing uses the default security group; closing it means nothing ever can by accident.
      restrictDefaultSecurityGroup: true,
    });
    this.flowLogGroup = new logs.LogGroup(this, 'FlowLogs', {
      encryptionKey: props.logKey,
      retention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(this.flowLogGroup),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });
    const interfaces: Record<string, ec2.InterfaceVpcEndpointAwsService> = {
      // Batch hosts: pull the job image, register with ECS, ship container logs.
      Ecr: ec2.InterfaceVpcEndpointAwsService.ECR,
      EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
      Ecs: ec2.InterfaceVpcEndpointAwsService.ECS,
      EcsAgent: ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
      EcsTelemetry: ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
      Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
      Sts: ec2.InterfaceVpcEndpointAwsService.STS,
      // The dispatcher submits Batch jobs; the query function invokes its shard functions.
      Batch: ec2.InterfaceVpcEndpointAwsService.BATCH,
      Lambda: ec2.InterfaceVpcEndpointAwsService.LAMBDA,
    };
    for (const [name, service] of Object.entries(interfaces)) {
      // `open` lets anything in the VPC reach the endpoint on 443; nothing outside the VPC can.
      const endpoint = this.vpc.addInterfaceEndpoint(name, {
        service,
        subnets: this.subnets,
        privateDnsEnabled: true,
        open: true,
      });
      const reason =
        'The endpoint accepts HTTPS (443) from the VPC CIDR only; cdk-nag cannot read that CIDR because it is a reference to the VPC.';
      Validations.of(endpoint).acknowledge(
        { id: 'AwsSolutions-EC23', reason },
        { id: 'HIPAA.Security-EC2RestrictedSSH', reason },
        { id: 'HIPAA.Security-EC2RestrictedCommonPorts', reason },
      );
    }
    Validations.of(this.vpc).acknowledge({
      id: 'HIPAA.Security-IAMNoInlinePolicy',
      reason: 'The flow log role’s own policy allows writing to this VPC’s flow log group only.',
    });
  }
}
