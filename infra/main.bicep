// Elevate demo infrastructure and pipeline identities, deployed into one
// resource group:
//
//   az deployment group create --resource-group rg-elevate-demo \
//     --template-file infra/main.bicep \
//     --parameters githubRepository=OWNER/REPO initialSecretValue=...
//
// It mirrors the emulator's demo tenant (examples/emulator/demo.yaml):
//   emulator seed                              this template
//   resource group rg-elevate-demo             the target resource group
//   Key Vault kv-elevate-demo                  keyVault (keyVaultName)
//   secret app-db-password                     appDbPassword
//   storage account stelevatedemo              storageAccount (storageAccountName)
//   service principal elevate-pipeline         pipelineIdentity (a managed identity)
//   its federated credential                   pipelineFederatedCredential
//   standing RBAC Administrator assignment     delegation, with the same ABAC
//   and its condition                          condition and the same default
//                                              allowed roles
// The template adds a read-only planner identity, which the seed lacks: the
// plan job signs in as it so that no ungated job can sign in as the
// pipeline identity.
//
// NOTE: written without a Bicep compiler at hand and never deployed; see
// docs/github-actions.md. API versions are the stable ones found in the
// azure-rest-api-specs repository.

targetScope = 'resourceGroup'

@description('Location of every resource.')
param location string = resourceGroup().location

@description('GitHub repository that runs the Elevate workflow, as OWNER/NAME.')
param githubRepository string

@description('GitHub environment whose approval gate guards the apply job.')
param githubEnvironment string = 'production'

@description('OIDC subject the planner identity trusts; the plan job runs without an environment, so this names the branch it runs on.')
param plannerSubject string = 'repo:${githubRepository}:ref:refs/heads/main'

@description('Name of the pipeline identity, which grants itself the allowed roles after approval.')
param pipelineIdentityName string = 'id-elevate-pipeline'

@description('Name of the read-only planner identity used by the plan job.')
param plannerIdentityName string = 'id-elevate-planner'

@description('Key Vault name. Vault names are globally unique: change it if the default is taken.')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-elevate-demo'

@description('Storage account name, 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string = 'stelevatedemo'

@description('Initial value of the demo secret app-db-password; the demo workflow rotates it.')
@secure()
param initialSecretValue string

// Add Storage Blob Data Contributor (ba92f5b4-2d11-453d-a403-e96b0029c9fe) to
// let pipelines write blobs in the storage account.
@description('Role definition GUIDs the pipeline may grant itself. Never include a role that can write role assignments.')
param allowedRoleIds array = [
  'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
  'acdd72a7-3385-48ef-bd42-f606fba81ae7' // Reader
]

// Built-in role definition GUIDs, the same in every tenant.
var rbacAdministratorRoleId = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'
var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

// GitHub Actions OIDC issuer and the audience Entra expects in its tokens.
var githubIssuer = 'https://token.actions.githubusercontent.com'
var tokenExchangeAudience = 'api://AzureADTokenExchange'

resource pipelineIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: pipelineIdentityName
  location: location
}

// Only jobs that run in the gated environment can sign in as the pipeline
// identity: the subject names the environment, not a branch.
resource pipelineFederatedCredential 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: pipelineIdentity
  name: 'github-${githubEnvironment}'
  properties: {
    issuer: githubIssuer
    subject: 'repo:${githubRepository}:environment:${githubEnvironment}'
    audiences: [
      tokenExchangeAudience
    ]
  }
}

resource plannerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: plannerIdentityName
  location: location
}

resource plannerFederatedCredential 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: plannerIdentity
  name: 'github-plan'
  properties: {
    issuer: githubIssuer
    subject: plannerSubject
    audiences: [
      tokenExchangeAudience
    ]
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Data-plane access through Azure RBAC, so Elevate's temporary role
    // assignments are what opens the vault; access policies are ignored.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Irreversible once set: a deleted vault cannot be purged early.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource appDbPassword 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: 'app-db-password'
  tags: {
    owner: 'payments'
  }
  properties: {
    value: initialSecretValue
  }
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Entra ID only, so access comes from role assignments, not account keys.
    allowSharedKeyAccess: false
  }
}

// The same condition `elevate bootstrap` prints: writing a role assignment is
// allowed only for the listed roles and only for the pipeline identity, and
// deleting one only under the same two restrictions.
var allowedRoleList = join(allowedRoleIds, ', ')
var pipelinePrincipalId = pipelineIdentity.properties.principalId
var delegationCondition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${allowedRoleList}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAnyValues:GuidEquals {${pipelinePrincipalId}})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${allowedRoleList}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAnyValues:GuidEquals {${pipelinePrincipalId}}))'

resource delegation 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  // The name must be known when the deployment starts, so it uses the
  // identity's resource id rather than its principal id.
  name: guid(resourceGroup().id, pipelineIdentity.id, rbacAdministratorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministratorRoleId)
    principalId: pipelinePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Elevate: may grant only ${allowedRoleList} to itself'
    conditionVersion: '2.0'
    condition: delegationCondition
  }
}

// Reader lets the planner resolve role and resource names and list locks in
// this resource group. Counting the subscription's role assignments needs
// Reader at the subscription; without it that pre-flight check is a warning.
resource plannerReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, plannerIdentity.id, readerRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: plannerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Elevate planner: read-only, for elevate plan'
  }
}

@description('Tenant id: the AZURE_TENANT_ID repository variable.')
output tenantId string = subscription().tenantId

@description('Client id of the pipeline identity: the AZURE_CLIENT_ID repository variable.')
output pipelineClientId string = pipelineIdentity.properties.clientId

@description('Object id of the pipeline identity: the ELEVATE_PRINCIPAL_ID repository variable.')
output pipelinePrincipalId string = pipelinePrincipalId

@description('Client id of the planner identity: the ELEVATE_PLANNER_CLIENT_ID repository variable.')
output plannerClientId string = plannerIdentity.properties.clientId

@description('Object id of the planner identity.')
output plannerPrincipalId string = plannerIdentity.properties.principalId

output pipelineIdentityId string = pipelineIdentity.id
output plannerIdentityId string = plannerIdentity.id

@description('Key Vault resource id: the ELEVATE_DEMO_VAULT_ID repository variable and the scope to grant on.')
output keyVaultId string = keyVault.id

@description('Key Vault name: the ELEVATE_DEMO_VAULT_NAME repository variable.')
output keyVaultName string = keyVault.name

output keyVaultUri string = keyVault.properties.vaultUri
output storageAccountId string = storageAccount.id
output delegationAssignmentId string = delegation.id
