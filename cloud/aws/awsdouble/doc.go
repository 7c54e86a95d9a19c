// Package awsdouble is a test double of the small part of the AWS EC2 and
// Elastic Load Balancing v2 APIs that Berth's AWS backend calls. It is used
// by unit and end-to-end tests only and must never be linked into a Berth
// binary.
//
// It was written from the public API references and from the request
// serializers and response deserializers of aws-sdk-go-v2, not from
// observing AWS. It is not an emulator: it implements exactly the operations
// listed below, with the validation and error codes listed below, and
// nothing else of AWS's behaviour. Of eventual consistency it models the
// load balancer "provisioning" state, targets that drain for a while after
// deregistration (SetDrainingDescribes) and target groups AWS still holds
// for a while after their listener let go (SetInUseAfterDetach), new
// Elastic IPs that describes do not show yet (SetAddressVisibilityDelay)
// new security groups that calls do not see yet
// (SetSecurityGroupVisibilityDelay), new load balancers, target groups
// and listeners that describes do not show yet (SetELBVisibilityDelay)
// new ELB tags that DescribeTags does not show yet
// (SetELBTagVisibilityDelay), and changes to security group rules,
// Elastic IP associations and Elastic IP tags that describes do not show
// yet (SetEC2ChangeVisibilityDelay); not the visibility delays of other
// resources (instance and subnet tags, secondary private addresses,
// targets). It paginates
// DescribeInstances only, checks tags as AWS does (lengths, the "aws:"
// prefix, 50 per request), and models no signatures. It evaluates IAM
// identity policies bound to access keys with SetPolicy (authz.go names the
// resources and condition keys of each operation; iam.go the subset of the
// policy language it understands, refusing the rest). The AWS
// emulator kumo, which was the first choice, cannot be fetched in Berth's
// build environment; this package exists for that reason and should be
// replaced if kumo becomes available.
//
// A Server speaks the wire protocols, so the real SDK clients talk to it:
// EC2 (ec2query, Version 2016-11-15) at Server.EC2Endpoint and ELBv2
// (awsquery, Version 2015-12-01) at Server.ELBv2Endpoint, set as the
// clients' BaseEndpoint. Both share one state, so ELBv2 RegisterTargets
// checks the instances that EC2 knows. Requests must carry an Authorization
// header; its signature is not verified. An operation the double does not
// implement fails with the error code InvalidAction naming it.
//
// EC2 operations: DescribeSubnets, DescribeInstances,
// DescribeNetworkInterfaces, AssignPrivateIpAddresses,
// UnassignPrivateIpAddresses, AllocateAddress, DescribeAddresses,
// AssociateAddress, DisassociateAddress, ReleaseAddress, CreateTags,
// DeleteTags, CreateSecurityGroup, DescribeSecurityGroups,
// AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress,
// DeleteSecurityGroup, DescribeRouteTables, DescribeAvailabilityZones.
//
// ELBv2 operations (network load balancers and instance target groups only):
// CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer,
// CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup,
// DeleteTargetGroup, RegisterTargets, DeregisterTargets,
// DescribeTargetHealth, CreateListener, DescribeListeners, ModifyListener,
// DeleteListener, DescribeTags, AddTags, RemoveTags, SetSecurityGroups.
//
// Tests seed the state with fixtures (AddSubnet, SetSubnetTags,
// AddRouteTable, SetZoneType,
// AddInstance, TagInstance, SetInstanceSecurityGroups, AddSecurityGroup,
// AddElasticIP, AddPublicIPv4Pool), inject faults (FailNext, for example to check that
// throttling is retried), and assert on what exists with Snapshot and on
// traffic with Calls. A Server is safe for concurrent use; it keeps no
// package-level state.
package awsdouble
