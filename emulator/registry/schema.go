package registry

import (
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/dps-conform/dps-conform/dps"
)

// AttestationType is attestation.type of an enrollment (DPS service schema;
// DPS-PROTOCOL.md §9).
type AttestationType string

// Attestation types. TPM is refused: TPM attestation is not supported over
// MQTT (D-MQTT; DPS-PROTOCOL.md §1.6).
const (
	AttestationSymmetricKey AttestationType = "symmetricKey"
	AttestationX509         AttestationType = "x509"
	AttestationTPM          AttestationType = "tpm"
	AttestationNone         AttestationType = "none"
)

// AllocationPolicy is allocationPolicy of an enrollment or of the service
// (CS provisioning/service/src/Config/AllocationPolicy.cs; DPS-PROTOCOL.md §9).
type AllocationPolicy string

// Allocation policies.
const (
	AllocationHashed     AllocationPolicy = "hashed"
	AllocationGeoLatency AllocationPolicy = "geoLatency"
	AllocationStatic     AllocationPolicy = "static"
	AllocationCustom     AllocationPolicy = "custom"
)

// ProvisioningStatus is provisioningStatus of an enrollment.
type ProvisioningStatus string

// Provisioning statuses; empty means enabled.
const (
	ProvisioningEnabled  ProvisioningStatus = "enabled"
	ProvisioningDisabled ProvisioningStatus = "disabled"
)

// AttestationMechanism is attestation of an enrollment.
type AttestationMechanism struct {
	Type         AttestationType          `json:"type" yaml:"type"`
	TPM          *TPMAttestation          `json:"tpm,omitempty" yaml:"tpm,omitempty"`
	X509         *X509Attestation         `json:"x509,omitempty" yaml:"x509,omitempty"`
	SymmetricKey *SymmetricKeyAttestation `json:"symmetricKey,omitempty" yaml:"symmetricKey,omitempty"`
}

// TPMAttestation is attestation.tpm. It is parsed so that service-schema
// documents load, and then refused (TPM is not supported over MQTT).
type TPMAttestation struct {
	EndorsementKey string `json:"endorsementKey,omitempty" yaml:"endorsementKey,omitempty"`
	StorageRootKey string `json:"storageRootKey,omitempty" yaml:"storageRootKey,omitempty"`
}

// SymmetricKeyAttestation is attestation.symmetricKey: base64 keys. For a
// group they are the group keys from which device keys are derived
// (dps.DeriveDeviceKey).
type SymmetricKeyAttestation struct {
	PrimaryKey   string `json:"primaryKey,omitempty" yaml:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty" yaml:"secondaryKey,omitempty"`
}

// X509Attestation is attestation.x509. Individual enrollments use
// clientCertificates (the device's own certificate, matched by thumbprint);
// groups use signingCertificates (a root or intermediate CA the device chain
// must verify against). An individual enrollment may also carry
// signingCertificates (an extension: the device's chain is verified instead of
// its thumbprint). caReferences (certificates uploaded to the service) are
// not supported.
type X509Attestation struct {
	ClientCertificates  *X509Certificates `json:"clientCertificates,omitempty" yaml:"clientCertificates,omitempty"`
	SigningCertificates *X509Certificates `json:"signingCertificates,omitempty" yaml:"signingCertificates,omitempty"`
	CAReferences        *X509CAReferences `json:"caReferences,omitempty" yaml:"caReferences,omitempty"`
}

// X509Certificates is a primary and an optional secondary certificate.
type X509Certificates struct {
	Primary   *X509CertificateWithInfo `json:"primary,omitempty" yaml:"primary,omitempty"`
	Secondary *X509CertificateWithInfo `json:"secondary,omitempty" yaml:"secondary,omitempty"`
}

// X509CertificateWithInfo is one certificate: Certificate is PEM text, or
// base64 of DER or of PEM (the service API form). Info is written by the
// registry; for a clientCertificates entry an Info with only sha1Thumbprint
// or sha256Thumbprint (hex, any case) and no Certificate enrolls a device by
// thumbprint.
type X509CertificateWithInfo struct {
	Certificate string               `json:"certificate,omitempty" yaml:"certificate,omitempty"`
	Info        *X509CertificateInfo `json:"info,omitempty" yaml:"info,omitempty"`
}

// X509CertificateInfo is the info of an enrolled certificate: the members of
// dps.X509CertificateInfo, with YAML names for the config file.
type X509CertificateInfo struct {
	SubjectName      string `json:"subjectName,omitempty" yaml:"subjectName,omitempty"`
	SHA1Thumbprint   string `json:"sha1Thumbprint,omitempty" yaml:"sha1Thumbprint,omitempty"`
	SHA256Thumbprint string `json:"sha256Thumbprint,omitempty" yaml:"sha256Thumbprint,omitempty"`
	IssuerName       string `json:"issuerName,omitempty" yaml:"issuerName,omitempty"`
	NotBeforeUTC     string `json:"notBeforeUtc,omitempty" yaml:"notBeforeUtc,omitempty"`
	NotAfterUTC      string `json:"notAfterUtc,omitempty" yaml:"notAfterUtc,omitempty"`
	SerialNumber     string `json:"serialNumber,omitempty" yaml:"serialNumber,omitempty"`
	Version          int    `json:"version,omitempty" yaml:"version,omitempty"`
}

// X509CAReferences names CA certificates uploaded to the service. Parsed,
// then refused: the emulator has no certificate store.
type X509CAReferences struct {
	Primary   string `json:"primary,omitempty" yaml:"primary,omitempty"`
	Secondary string `json:"secondary,omitempty" yaml:"secondary,omitempty"`
}

// ReprovisionPolicy is reprovisionPolicy (CS ReprovisionPolicy.cs): each
// field defaults to true (DPS-PROTOCOL.md §9), when the policy is absent
// and when the policy leaves the field out.
type ReprovisionPolicy struct {
	UpdateHubAssignment bool `json:"updateHubAssignment" yaml:"updateHubAssignment"`
	MigrateDeviceData   bool `json:"migrateDeviceData" yaml:"migrateDeviceData"`
}

// reprovisionPolicyFields has ReprovisionPolicy's fields and tags, without
// its decoding methods.
type reprovisionPolicyFields ReprovisionPolicy

// UnmarshalJSON decodes a policy, a field left out being true.
func (p *ReprovisionPolicy) UnmarshalJSON(b []byte) error {
	v := reprovisionPolicyFields{UpdateHubAssignment: true, MigrateDeviceData: true}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = ReprovisionPolicy(v)
	return nil
}

// UnmarshalYAML decodes a policy, a field left out being true. A field of
// another name is an error, as everywhere in a config file (Node.Decode
// would not check).
func (p *ReprovisionPolicy) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value != "updateHubAssignment" && k.Value != "migrateDeviceData" {
				return fmt.Errorf("line %d: unknown field %q in reprovisionPolicy (its fields: updateHubAssignment, migrateDeviceData)", k.Line, k.Value)
			}
		}
	}
	v := reprovisionPolicyFields{UpdateHubAssignment: true, MigrateDeviceData: true}
	if err := n.Decode(&v); err != nil {
		return err
	}
	*p = ReprovisionPolicy(v)
	return nil
}

// CustomAllocationDefinition is customAllocationDefinition: the webhook the
// custom allocation policy calls.
type CustomAllocationDefinition struct {
	WebhookURL string `json:"webhookUrl" yaml:"webhookUrl"`
	APIVersion string `json:"apiVersion,omitempty" yaml:"apiVersion,omitempty"`
}

// DeviceCapabilities is capabilities.
type DeviceCapabilities struct {
	IoTEdge bool `json:"iotEdge" yaml:"iotEdge"`
}

// InitialTwin is initialTwin: tags and desired properties given to the hub
// at assignment. Values are arbitrary JSON.
type InitialTwin struct {
	Tags       map[string]any         `json:"tags,omitempty" yaml:"tags,omitempty"`
	Properties *InitialTwinProperties `json:"properties,omitempty" yaml:"properties,omitempty"`
}

// InitialTwinProperties is initialTwin.properties.
type InitialTwinProperties struct {
	Desired map[string]any `json:"desired,omitempty" yaml:"desired,omitempty"`
}

// IndividualEnrollment is an individual enrollment in the DPS service REST
// schema. createdDateTimeUtc, lastUpdatedDateTimeUtc and etag are written by
// the registry; registrationState is read-only and ignored on input.
type IndividualEnrollment struct {
	RegistrationID    string                        `json:"registrationId" yaml:"registrationId"`
	DeviceID          string                        `json:"deviceId,omitempty" yaml:"deviceId,omitempty"`
	RegistrationState *dps.DeviceRegistrationResult `json:"registrationState,omitempty" yaml:"-"`
	// IgnoredRegistrationState absorbs a registrationState member in a
	// config file (what "az iot dps enrollment show" prints), which is
	// read-only and ignored.
	IgnoredRegistrationState   ignoredYAML                 `json:"-" yaml:"registrationState,omitempty"`
	Attestation                AttestationMechanism        `json:"attestation" yaml:"attestation"`
	Capabilities               *DeviceCapabilities         `json:"capabilities,omitempty" yaml:"capabilities,omitempty"`
	IoTHubHostName             string                      `json:"iotHubHostName,omitempty" yaml:"iotHubHostName,omitempty"`
	InitialTwin                *InitialTwin                `json:"initialTwin,omitempty" yaml:"initialTwin,omitempty"`
	ETag                       string                      `json:"etag,omitempty" yaml:"etag,omitempty"`
	ProvisioningStatus         ProvisioningStatus          `json:"provisioningStatus,omitempty" yaml:"provisioningStatus,omitempty"`
	ReprovisionPolicy          *ReprovisionPolicy          `json:"reprovisionPolicy,omitempty" yaml:"reprovisionPolicy,omitempty"`
	CreatedDateTimeUTC         string                      `json:"createdDateTimeUtc,omitempty" yaml:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC     string                      `json:"lastUpdatedDateTimeUtc,omitempty" yaml:"lastUpdatedDateTimeUtc,omitempty"`
	AllocationPolicy           AllocationPolicy            `json:"allocationPolicy,omitempty" yaml:"allocationPolicy,omitempty"`
	IoTHubs                    []string                    `json:"iotHubs,omitempty" yaml:"iotHubs,omitempty"`
	CustomAllocationDefinition *CustomAllocationDefinition `json:"customAllocationDefinition,omitempty" yaml:"customAllocationDefinition,omitempty"`
	// OptionalDeviceInformation is the service's free-form device
	// information (a twin collection): kept and shown, not used.
	OptionalDeviceInformation map[string]any `json:"optionalDeviceInformation,omitempty" yaml:"optionalDeviceInformation,omitempty"`
}

// EnrollmentGroup is an enrollment group in the DPS service REST schema.
type EnrollmentGroup struct {
	EnrollmentGroupID          string                      `json:"enrollmentGroupId" yaml:"enrollmentGroupId"`
	Attestation                AttestationMechanism        `json:"attestation" yaml:"attestation"`
	Capabilities               *DeviceCapabilities         `json:"capabilities,omitempty" yaml:"capabilities,omitempty"`
	IoTHubHostName             string                      `json:"iotHubHostName,omitempty" yaml:"iotHubHostName,omitempty"`
	InitialTwin                *InitialTwin                `json:"initialTwin,omitempty" yaml:"initialTwin,omitempty"`
	ETag                       string                      `json:"etag,omitempty" yaml:"etag,omitempty"`
	ProvisioningStatus         ProvisioningStatus          `json:"provisioningStatus,omitempty" yaml:"provisioningStatus,omitempty"`
	ReprovisionPolicy          *ReprovisionPolicy          `json:"reprovisionPolicy,omitempty" yaml:"reprovisionPolicy,omitempty"`
	CreatedDateTimeUTC         string                      `json:"createdDateTimeUtc,omitempty" yaml:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC     string                      `json:"lastUpdatedDateTimeUtc,omitempty" yaml:"lastUpdatedDateTimeUtc,omitempty"`
	AllocationPolicy           AllocationPolicy            `json:"allocationPolicy,omitempty" yaml:"allocationPolicy,omitempty"`
	IoTHubs                    []string                    `json:"iotHubs,omitempty" yaml:"iotHubs,omitempty"`
	CustomAllocationDefinition *CustomAllocationDefinition `json:"customAllocationDefinition,omitempty" yaml:"customAllocationDefinition,omitempty"`
}

// LinkedHub is an IoT hub linked to the emulated DPS instance.
type LinkedHub struct {
	// Name is the hub host name, e.g. "hub1.azure-devices.net".
	Name string `json:"name" yaml:"name"`
	// AllocationWeight weighs the hub under the hashed policy; 0 means 1.
	AllocationWeight int `json:"allocationWeight,omitempty" yaml:"allocationWeight,omitempty"`
	// LatencyMs is the simulated latency the geoLatency policy minimises.
	LatencyMs int `json:"latencyMs,omitempty" yaml:"latencyMs,omitempty"`
	// ApplyAllocationPolicy opts the hub into allocation for enrollments
	// that list no iotHubs. When no linked hub sets it, every linked hub
	// takes part.
	ApplyAllocationPolicy bool `json:"applyAllocationPolicy,omitempty" yaml:"applyAllocationPolicy,omitempty"`
}

// Config is the emulator's enrollment configuration: the id scope, the linked
// hubs and the enrollments, as loaded from a YAML or JSON file.
type Config struct {
	// IDScope is the DPS id scope; empty means generated once ("0ne" + 8
	// upper-case hex digits) and kept in the state.
	IDScope string `json:"idScope,omitempty" yaml:"idScope,omitempty"`
	// AllocationPolicy is the service-wide default for enrollments that set
	// none; empty means hashed.
	AllocationPolicy AllocationPolicy `json:"allocationPolicy,omitempty" yaml:"allocationPolicy,omitempty"`
	// LinkedHubs are the IoT hubs devices can be assigned to.
	LinkedHubs []LinkedHub `json:"linkedHubs,omitempty" yaml:"linkedHubs,omitempty"`
	// Enrollments are individual enrollments, upserted at Open.
	Enrollments []IndividualEnrollment `json:"enrollments,omitempty" yaml:"enrollments,omitempty"`
	// EnrollmentGroups are enrollment groups, upserted at Open.
	EnrollmentGroups []EnrollmentGroup `json:"enrollmentGroups,omitempty" yaml:"enrollmentGroups,omitempty"`
}

// ignoredYAML accepts any YAML value and keeps nothing.
type ignoredYAML struct{}

// UnmarshalYAML implements yaml.Unmarshaler.
func (ignoredYAML) UnmarshalYAML(*yaml.Node) error { return nil }

// IsZero makes omitempty leave it out when marshalling.
func (ignoredYAML) IsZero() bool { return true }
