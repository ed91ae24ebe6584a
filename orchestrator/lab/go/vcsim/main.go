// Command hopnhat-vcsim is the lab's vCenter: the vCenter simulator of govmomi v0.56.0
// (its simulator package, at the release go.mod pins) serving an inventory built from a
// JSON model file (the only argument; secrets never travel on argv). Where that simulator
// differs from vCenter in ways the lab cannot accept, the types of the section "fixes to
// the simulator" take the place of its own objects; govmomi's source is used as released.
//
// The model file names the listen address, the TLS certificate and key (generated when
// missing), the credentials file, the ready file, method delays and the inventory:
// datacenters with clusters of hosts, datastores, port groups, templates and plain VMs
// (the lab's "foreign" and legacy VMs: in folders, with more disks, guest info, extraConfig,
// an annotation and custom attribute values). See orchestrator/lab/vcsim.py for the format.
//
// Signals: SIGHUP re-reads the model file and applies its "delays" only; SIGTERM and
// SIGINT stop the server and exit 0.
//
// A *_Task method answers once its task is done (see soapFront.wrap), and the simulator
// says API version 8.0.3 (see run).
//
// Lab-only HTTP endpoints on the same server: GET /lab/methods answers the SOAP method
// call counts since start (or since the last reset) as a JSON object; POST
// /lab/methods/reset zeroes them; GET /lab/delays answers the delays in force.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ---------------------------------------------------------------- the model file

type tlsSpec struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

type delaySpec struct {
	DelayMS int            `json:"delay_ms"`
	Jitter  float64        `json:"jitter"`
	Methods map[string]int `json:"methods"`
}

type clusterSpec struct {
	Name         string `json:"name"`
	Hosts        int    `json:"hosts"`
	HostCPUCores int    `json:"host_cpu_cores"`
	HostCPUMhz   int    `json:"host_cpu_mhz"`
	HostMemoryMB int64  `json:"host_memory_mb"`
}

type datastoreSpec struct {
	Name       string  `json:"name"`
	CapacityGB float64 `json:"capacity_gb"`
	FreeGB     float64 `json:"free_gb"`
}

type vmSpec struct {
	Name      string  `json:"name"`
	CPU       int32   `json:"cpu"`
	MemoryMB  int64   `json:"memory_mb"`
	DiskGB    float64 `json:"disk_gb"`
	Datastore string  `json:"datastore"`
	Portgroup string  `json:"portgroup"`
	Cluster   string  `json:"cluster"`
	PowerOn   bool    `json:"power_on"`
	GuestID   string  `json:"guest_id"`
	// plain VMs only: all optional
	Folder       string            `json:"folder"`         // "Legacy/QLVB": under the datacenter's VM folder
	ExtraDisksGB []float64         `json:"extra_disks_gb"` // disks after the first
	IP           string            `json:"ip"`             // guest.ipAddress (SET.guest.ipAddress)
	Hostname     string            `json:"hostname"`       // guest.hostName (SET.guest.hostName)
	Annotation   string            `json:"annotation"`     // config.annotation
	Attributes   map[string]string `json:"attributes"`     // custom attribute name -> value
	ExtraConfig  map[string]string `json:"extra_config"`   // plain extraConfig keys
}

type datacenterSpec struct {
	Name       string          `json:"name"`
	Clusters   []clusterSpec   `json:"clusters"`
	Datastores []datastoreSpec `json:"datastores"`
	Portgroups []string        `json:"portgroups"`
	Templates  []vmSpec        `json:"templates"`
	VMs        []vmSpec        `json:"vms"`
}

type modelSpec struct {
	Listen          string           `json:"listen"`
	TLS             tlsSpec          `json:"tls"`
	CredentialsFile string           `json:"credentials_file"`
	ReadyFile       string           `json:"ready_file"`
	StorageDir      string           `json:"storage_dir"`
	Delays          delaySpec        `json:"delays"`
	Datacenters     []datacenterSpec `json:"datacenters"`
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

const (
	gib            = int64(1) << 30
	defaultGuestID = "otherLinux64Guest"
	storageMarker  = ".hopnhat-vcsim-storage"
)

func readModel(file string) (*modelSpec, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var spec modelSpec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if spec.Listen == "" || spec.TLS.Cert == "" || spec.TLS.Key == "" ||
		spec.CredentialsFile == "" || spec.ReadyFile == "" {
		return nil, fmt.Errorf("%s: listen, tls.cert, tls.key, credentials_file and ready_file are required", file)
	}
	if err := spec.check(); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return &spec, nil
}

// check refuses numbers the simulator would take but no vCenter could show.
func (m *modelSpec) check() error {
	d := m.Delays
	if d.DelayMS < 0 || d.Jitter < 0 {
		return errors.New("delays: delay_ms and jitter must be >= 0")
	}
	for name, ms := range d.Methods {
		if ms < 0 {
			return fmt.Errorf("delays: %s: must be >= 0", name)
		}
	}
	for _, dc := range m.Datacenters {
		if dc.Name == "" {
			return errors.New("a datacenter has no name")
		}
		for _, c := range dc.Clusters {
			if c.Name == "" || c.Hosts < 0 {
				return fmt.Errorf("%s: a cluster needs a name and hosts >= 0", dc.Name)
			}
			if c.Hosts > 0 && (c.HostCPUCores < 1 || c.HostCPUCores > 4096 || c.HostCPUMhz < 1 || c.HostMemoryMB < 1) {
				return fmt.Errorf("%s/%s: host_cpu_cores (1-4096), host_cpu_mhz and host_memory_mb must be > 0", dc.Name, c.Name)
			}
		}
		for _, ds := range dc.Datastores {
			if ds.Name == "" || ds.CapacityGB <= 0 || ds.FreeGB < 0 || ds.FreeGB > ds.CapacityGB {
				return fmt.Errorf("%s: datastore %q needs capacity_gb > 0 and 0 <= free_gb <= capacity_gb", dc.Name, ds.Name)
			}
		}
		for _, vm := range append(append([]vmSpec(nil), dc.Templates...), dc.VMs...) {
			if vm.Name == "" || vm.DiskGB <= 0 || vm.CPU < 0 || vm.MemoryMB < 0 {
				return fmt.Errorf("%s: VM %q needs a name, disk_gb > 0, cpu and memory_mb >= 0", dc.Name, vm.Name)
			}
			if err := vm.checkExtras(); err != nil {
				return fmt.Errorf("%s: VM %q: %v", dc.Name, vm.Name, err)
			}
		}
		for _, t := range dc.Templates {
			if t.Folder != "" || len(t.ExtraDisksGB) != 0 || t.IP != "" || t.Hostname != "" ||
				t.Annotation != "" || len(t.Attributes) != 0 || len(t.ExtraConfig) != 0 {
				return fmt.Errorf("%s: template %q: folder, extra disks, guest info, annotation, attributes and extra_config are for VMs", dc.Name, t.Name)
			}
		}
	}
	return nil
}

// checkExtras refuses what a plain VM's optional fields cannot mean.
func (vm *vmSpec) checkExtras() error {
	if vm.Folder != "" {
		for _, part := range strings.Split(vm.Folder, "/") {
			if part == "" || part == "." || part == ".." {
				return fmt.Errorf("folder %q: a path of folder names joined by '/'", vm.Folder)
			}
		}
	}
	for _, gb := range vm.ExtraDisksGB {
		if gb <= 0 {
			return errors.New("extra_disks_gb must be > 0")
		}
	}
	if vm.IP != "" && net.ParseIP(vm.IP).To4() == nil {
		return fmt.Errorf("ip %q is not an IPv4 address", vm.IP)
	}
	for key := range vm.ExtraConfig {
		if key == "" || strings.HasPrefix(key, "SET.") || key == "ip0" {
			return fmt.Errorf("extra_config %q: SET.* and ip0 are the simulator's instructions (use ip and hostname)", key)
		}
	}
	for name := range vm.Attributes {
		if name == "" {
			return errors.New("an attribute needs a name")
		}
	}
	return nil
}

func readCredentials(file string) (*credentials, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c credentials
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object with username and password", file)
	}
	if c.Username == "" || c.Password == "" {
		return nil, fmt.Errorf("%s: username and password must not be empty", file)
	}
	return &c, nil
}

// ---------------------------------------------------------------- TLS

// loadOrCreateCert returns the key pair in certFile/keyFile, first writing a self-signed
// ECDSA certificate for host (IP or DNS SAN) and "localhost" when either file is missing.
func loadOrCreateCert(certFile, keyFile, host string) (tls.Certificate, error) {
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if certErr != nil || keyErr != nil {
		if err := createCert(certFile, keyFile, host); err != nil {
			return tls.Certificate{}, err
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return pair, err
	}
	// An existing certificate is kept as it is; say so when clients will refuse it.
	if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
		if err := leaf.VerifyHostname(host); err != nil {
			log.Printf("warning: %s: %v (remove the certificate and key to get a new pair)", certFile, err)
		}
		if time.Now().After(leaf.NotAfter) {
			log.Printf("warning: %s expired on %s", certFile, leaf.NotAfter.Format(time.RFC3339))
		}
	}
	return pair, nil
}

func createCert(certFile, keyFile, host string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	keyID := sha1.Sum(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "hopnhat lab vcsim", Organization: []string{"hopnhat lab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // it is its own trust anchor: clients use it as the CA bundle
		SubjectKeyId:          keyID[:],
		AuthorityKeyId:        keyID[:],
		DNSNames:              []string{"localhost"},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else if host != "" && host != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeAtomic writes data to a temporary file beside file, with mode, and renames it.
func writeAtomic(file string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// ---------------------------------------------------------------- inventory

// builder creates the inventory through the simulator's own SOAP handlers (an in-process
// vim25 client), editing simulator objects directly only where no API call exists.
type builder struct {
	ctx     context.Context
	c       *vim25.Client
	sim     *simulator.Context  // the service's context, for registry calls that need one
	reg     *simulator.Registry // the simulator's objects (per service: no simulator.Map since govmomi 0.49)
	storage string
	fields  map[string]int32 // custom attribute (on VMs) name -> key, as made
}

type dcState struct {
	spec      datacenterSpec
	dc        *object.Datacenter
	folders   *object.DatacenterFolders
	clusters  map[string]*object.ClusterComputeResource
	hosts     []types.ManagedObjectReference
	networks  map[string]types.ManagedObjectReference
	stores    map[string]types.ManagedObjectReference
	vmFolders map[string]*object.Folder  // "Legacy/QLVB" -> the folder made for it
	vmDirs    map[string]map[string]bool // datastore -> VM directories taken on it
}

func (b *builder) wait(task *object.Task, err error) (types.AnyType, error) {
	if err != nil {
		return nil, err
	}
	info, err := task.WaitForResult(b.ctx, nil)
	if err != nil {
		return nil, err
	}
	return info.Result, nil
}

func (b *builder) build(spec *modelSpec) error {
	root := object.NewRootFolder(b.c)
	var dcs []*dcState
	for i, dspec := range spec.Datacenters {
		dc, err := root.CreateDatacenter(b.ctx, dspec.Name)
		if err != nil {
			return fmt.Errorf("datacenter %s: %v", dspec.Name, err)
		}
		folders, err := dc.Folders(b.ctx)
		if err != nil {
			return err
		}
		st := &dcState{
			spec: dspec, dc: dc, folders: folders,
			clusters:  map[string]*object.ClusterComputeResource{},
			networks:  map[string]types.ManagedObjectReference{},
			stores:    map[string]types.ManagedObjectReference{},
			vmFolders: map[string]*object.Folder{},
			vmDirs:    map[string]map[string]bool{},
		}
		for _, cspec := range dspec.Clusters {
			if err := b.cluster(st, cspec); err != nil {
				return fmt.Errorf("%s/%s: %v", dspec.Name, cspec.Name, err)
			}
		}
		if err := b.portgroups(st); err != nil {
			return fmt.Errorf("%s: port groups: %v", dspec.Name, err)
		}
		for j, ds := range dspec.Datastores {
			if err := b.datastore(st, ds, filepath.Join(b.storage, fmt.Sprintf("dc%d", i), fmt.Sprintf("ds%d", j))); err != nil {
				return fmt.Errorf("%s/%s: %v", dspec.Name, ds.Name, err)
			}
		}
		dcs = append(dcs, st)
	}
	for _, st := range dcs {
		for _, t := range st.spec.Templates {
			if err := b.vm(st, t, true); err != nil {
				return fmt.Errorf("%s: template %s: %v", st.spec.Name, t.Name, err)
			}
		}
		for _, v := range st.spec.VMs {
			if err := b.vm(st, v, false); err != nil {
				return fmt.Errorf("%s: vm %s: %v", st.spec.Name, v.Name, err)
			}
		}
		// Disks of the templates and VMs took space: the summary now says what the model says.
		for _, ds := range st.spec.Datastores {
			b.setDatastoreSpace(st.stores[ds.Name], ds)
		}
		b.removeDefaultNetwork(st)
	}
	return nil
}

func (b *builder) cluster(st *dcState, spec clusterSpec) error {
	cluster, err := st.folders.HostFolder.CreateCluster(b.ctx, spec.Name, types.ClusterConfigSpecEx{})
	if err != nil {
		return err
	}
	st.clusters[spec.Name] = cluster
	var hosts []*simulator.HostSystem
	for n := 1; n <= spec.Hosts; n++ {
		name := fmt.Sprintf("%s-esx%02d", strings.ToLower(spec.Name), n)
		res, err := b.wait(cluster.AddHost(b.ctx, types.HostConnectSpec{HostName: name}, true, nil, nil))
		if err != nil {
			return err
		}
		ref := res.(types.ManagedObjectReference)
		h := b.reg.Get(ref).(*simulator.HostSystem)
		setHostHardware(h, spec)
		hosts = append(hosts, h)
		st.hosts = append(st.hosts, ref)
	}
	// vcsim sums per-host MHz (not cores x MHz) and memory in bytes for effectiveMemory:
	// recompute the summary as vCenter reports it.
	cl := b.reg.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
	s := cl.Summary.GetComputeResourceSummary()
	s.TotalCpu, s.EffectiveCpu, s.TotalMemory, s.EffectiveMemory = 0, 0, 0, 0
	s.NumCpuCores, s.NumCpuThreads, s.NumHosts, s.NumEffectiveHosts = 0, 0, 0, 0
	for _, h := range hosts {
		hw := h.Summary.Hardware
		mhz := int32(hw.NumCpuCores) * hw.CpuMhz
		s.TotalCpu += mhz
		s.EffectiveCpu += mhz
		s.TotalMemory += hw.MemorySize
		s.EffectiveMemory += hw.MemorySize >> 20 // MB, as in the vSphere API
		s.NumCpuCores += hw.NumCpuCores
		s.NumCpuThreads += hw.NumCpuThreads
		s.NumHosts++
		s.NumEffectiveHosts++
	}
	return nil
}

func setHostHardware(h *simulator.HostSystem, spec clusterSpec) {
	cores := int16(spec.HostCPUCores)
	mem := spec.HostMemoryMB << 20
	hw := h.Summary.Hardware
	hw.NumCpuPkgs = 1
	hw.NumCpuCores = cores
	hw.NumCpuThreads = cores
	hw.CpuMhz = int32(spec.HostCPUMhz)
	hw.MemorySize = mem
	h.Hardware.CpuInfo.NumCpuPackages = 1
	h.Hardware.CpuInfo.NumCpuCores = cores
	h.Hardware.CpuInfo.NumCpuThreads = cores
	h.Hardware.CpuInfo.Hz = int64(spec.HostCPUMhz) * 1000 * 1000
	h.Hardware.MemorySize = mem
}

// portgroups creates one standard port group (a Network in the datacenter's network folder)
// per name, present on every host of the datacenter's clusters.
func (b *builder) portgroups(st *dcState) error {
	if len(st.spec.Portgroups) == 0 {
		return nil
	}
	if len(st.hosts) == 0 {
		return errors.New("a datacenter with port groups needs at least one host")
	}
	first := object.NewHostSystem(b.c, st.hosts[0])
	ns, err := first.ConfigManager().NetworkSystem(b.ctx)
	if err != nil {
		return err
	}
	var specs []types.HostPortGroup
	var names []string // in the model's order
	for _, name := range st.spec.Portgroups {
		pg := types.HostPortGroupSpec{Name: name, VswitchName: "vSwitch0"}
		// vcsim adds the Network object once per datacenter (DuplicateName on a second host),
		// so the API call runs on the first host and every host's network info is set below.
		if err := ns.AddPortGroup(b.ctx, pg); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		specs = append(specs, types.HostPortGroup{
			Key:     "key-vim.host.PortGroup-" + name,
			Vswitch: "key-vim.host.VirtualSwitch-vSwitch0",
			Spec:    pg,
		})
		names = append(names, name)
	}
	dc := b.reg.Get(st.dc.Reference()).(*simulator.Datacenter)
	var refs []types.ManagedObjectReference
	for _, name := range names {
		e := b.reg.FindByName(name, dc.Network)
		if e == nil {
			return fmt.Errorf("%s: network not created", name)
		}
		st.networks[name] = e.Reference()
		refs = append(refs, e.Reference())
	}
	for _, ref := range st.hosts {
		h := b.reg.Get(ref).(*simulator.HostSystem)
		hns := b.reg.Get(*h.ConfigManager.NetworkSystem).(*simulator.HostNetworkSystem)
		// vcsim's HostNetworkSystem lists a vSwitch's port groups by name (its Add/RemovePortGroup
		// look them up so); host.config.network lists them by key, as ESXi does.
		hns.NetworkInfo = withPortgroups(hns.NetworkInfo, specs, false)
		if h.Config != nil && h.Config.Network != nil {
			h.Config.Network = withPortgroups(h.Config.Network, specs, true)
		}
		h.Network = append([]types.ManagedObjectReference(nil), refs...)
	}
	for _, cluster := range st.clusters {
		cl := b.reg.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
		cl.Network = append([]types.ManagedObjectReference(nil), refs...)
	}
	return nil
}

// withPortgroups returns a copy of a host's network info whose VM port groups are ours:
// vcsim's "VM Network" goes, other port groups (the "Management Network" of vmk0) stay.
func withPortgroups(orig *types.HostNetworkInfo, ours []types.HostPortGroup, byKey bool) *types.HostNetworkInfo {
	info := *orig
	info.Portgroup = nil
	for _, pg := range orig.Portgroup {
		if pg.Spec.Name != "VM Network" {
			info.Portgroup = append(info.Portgroup, pg)
		}
	}
	info.Portgroup = append(info.Portgroup, ours...)
	info.Vswitch = append([]types.HostVirtualSwitch(nil), orig.Vswitch...)
	for i := range info.Vswitch {
		vswitch := &info.Vswitch[i]
		vswitch.Portgroup = nil
		for _, pg := range info.Portgroup {
			if pg.Spec.VswitchName != vswitch.Name {
				continue
			}
			if byKey {
				vswitch.Portgroup = append(vswitch.Portgroup, pg.Key)
			} else {
				vswitch.Portgroup = append(vswitch.Portgroup, pg.Spec.Name)
			}
		}
	}
	return &info
}

// removeDefaultNetwork drops the "VM Network" vcsim puts in every new datacenter.
func (b *builder) removeDefaultNetwork(st *dcState) {
	dc := b.reg.Get(st.dc.Reference()).(*simulator.Datacenter)
	for _, ref := range append([]types.ManagedObjectReference(nil), dc.Network...) {
		n, ok := b.reg.Get(ref).(*mo.Network)
		if !ok || n.Name != "VM Network" {
			continue
		}
		if _, ours := st.networks[n.Name]; ours {
			continue
		}
		folder := b.reg.Get(dc.NetworkFolder).(*simulator.Folder)
		simulator.RemoveReference(&folder.ChildEntity, ref)
		simulator.RemoveReference(&dc.Network, ref)
		for _, h := range st.hosts {
			host := b.reg.Get(h).(*simulator.HostSystem)
			simulator.RemoveReference(&host.Network, ref)
		}
		for _, cluster := range st.clusters {
			cl := b.reg.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
			simulator.RemoveReference(&cl.Network, ref)
		}
		b.reg.Remove(b.sim, ref)
	}
}

// datastore creates a local datastore backed by dir, mounted on every host of the datacenter:
// CreateLocalDatastore of the same name on a further host mounts the Datastore object the
// first call made (vcsim answers an empty reference then: the mount is checked instead).
func (b *builder) datastore(st *dcState, spec datastoreSpec, dir string) error {
	if len(st.hosts) == 0 {
		return errors.New("a datacenter with datastores needs at least one host")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var ref types.ManagedObjectReference
	for i, h := range st.hosts {
		host := object.NewHostSystem(b.c, h)
		dss, err := host.ConfigManager().DatastoreSystem(b.ctx)
		if err != nil {
			return err
		}
		ds, err := dss.CreateLocalDatastore(b.ctx, spec.Name, dir)
		if err != nil {
			return err
		}
		if i == 0 {
			ref = ds.Reference()
		}
	}
	mounted := 0
	for _, m := range b.reg.Get(ref).(*simulator.Datastore).Host {
		if simulator.FindReference(st.hosts, m.Key) != nil {
			mounted++
		}
	}
	if mounted != len(st.hosts) {
		return fmt.Errorf("mounted on %d of %d hosts", mounted, len(st.hosts))
	}
	st.stores[spec.Name] = ref
	b.setDatastoreSpace(ref, spec)
	return nil
}

// gbToBytes converts GiB (the model's "GB", possibly fractional) to bytes.
func gbToBytes(gb float64) int64 {
	return int64(gb * float64(gib))
}

func (b *builder) setDatastoreSpace(ref types.ManagedObjectReference, spec datastoreSpec) {
	ds := b.reg.Get(ref).(*simulator.Datastore)
	ds.Summary.Capacity = gbToBytes(spec.CapacityGB)
	ds.Summary.FreeSpace = gbToBytes(spec.FreeGB)
	info := ds.Info.GetDatastoreInfo()
	info.FreeSpace = ds.Summary.FreeSpace
	info.MaxFileSize = ds.Summary.FreeSpace
	info.MaxMemoryFileSize = ds.Summary.FreeSpace
}

// vmFolder returns the folder at path (folder names joined by '/') under the datacenter's
// VM folder, making each missing part: "" is the VM folder itself.
func (b *builder) vmFolder(st *dcState, folderPath string) (*object.Folder, error) {
	if folderPath == "" {
		return st.folders.VmFolder, nil
	}
	if f, ok := st.vmFolders[folderPath]; ok {
		return f, nil
	}
	parentPath, name := "", folderPath
	if i := strings.LastIndex(folderPath, "/"); i >= 0 {
		parentPath, name = folderPath[:i], folderPath[i+1:]
	}
	parent, err := b.vmFolder(st, parentPath)
	if err != nil {
		return nil, err
	}
	f, err := parent.CreateFolder(b.ctx, name)
	if err != nil {
		return nil, fmt.Errorf("folder %s: %v", folderPath, err)
	}
	st.vmFolders[folderPath] = f
	return f, nil
}

// vmDir returns the directory of a new VM called name on datastore: name, or name_1,
// name_2... when a VM of the model already took it (two VMs of one name in two folders),
// as vCenter names them. A VM's instance UUID follows from its path, so a name used once
// keeps the UUID it always had.
func (st *dcState) vmDir(datastore, name string) string {
	taken := st.vmDirs[datastore]
	if taken == nil {
		taken = map[string]bool{}
		st.vmDirs[datastore] = taken
	}
	dir := name
	for i := 1; taken[dir]; i++ {
		dir = fmt.Sprintf("%s_%d", name, i)
	}
	taken[dir] = true
	return dir
}

// fieldKey returns the key of the custom attribute (on VMs) called name, defined on first use.
func (b *builder) fieldKey(name string) (int32, error) {
	if key, ok := b.fields[name]; ok {
		return key, nil
	}
	def, err := object.NewCustomFieldsManager(b.c).Add(b.ctx, name, "VirtualMachine", nil, nil)
	if err != nil {
		return 0, fmt.Errorf("custom attribute %s: %v", name, err)
	}
	if b.fields == nil {
		b.fields = map[string]int32{}
	}
	b.fields[name] = def.Key
	return def.Key, nil
}

// sortedKeys returns m's keys in order (the model's maps give no order of their own).
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// vm creates a powered-off VM with its disks and one NIC in the named cluster's root pool
// (in its folder; with its guest info, extraConfig and annotation); a template is then
// marked as template, a plain VM given its custom attribute values and powered on when
// asked.
func (b *builder) vm(st *dcState, spec vmSpec, template bool) error {
	cluster, ok := st.clusters[spec.Cluster]
	if !ok {
		return fmt.Errorf("no cluster %q in this datacenter", spec.Cluster)
	}
	dsRef, ok := st.stores[spec.Datastore]
	if !ok {
		return fmt.Errorf("no datastore %q in this datacenter", spec.Datastore)
	}
	netRef, ok := st.networks[spec.Portgroup]
	if !ok {
		return fmt.Errorf("no port group %q in this datacenter", spec.Portgroup)
	}
	pool, err := cluster.ResourcePool(b.ctx)
	if err != nil {
		return err
	}
	folder, err := b.vmFolder(st, spec.Folder)
	if err != nil {
		return err
	}
	guest := spec.GuestID
	if guest == "" {
		guest = defaultGuestID
	}
	cpu, mem := spec.CPU, spec.MemoryMB
	if cpu <= 0 {
		cpu = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	dsPath := fmt.Sprintf("[%s]", spec.Datastore)
	dir := st.vmDir(spec.Datastore, spec.Name)
	config := types.VirtualMachineConfigSpec{
		Name:       spec.Name,
		GuestId:    guest,
		NumCPUs:    cpu,
		MemoryMB:   mem,
		Annotation: spec.Annotation,
		Files: &types.VirtualMachineFileInfo{
			VmPathName: fmt.Sprintf("%s %s", dsPath, path.Join(dir, spec.Name+".vmx"))},
	}
	// SET.<property>: the simulator sets that property of the VM (guest info a VM's tools
	// would report); it survives power-on, which changes guest info only to apply a
	// customization. Other keys are kept as extraConfig.
	extra := map[string]string{}
	for k, v := range spec.ExtraConfig {
		extra[k] = v
	}
	if spec.IP != "" {
		extra["SET.guest.ipAddress"] = spec.IP
	}
	if spec.Hostname != "" {
		extra["SET.guest.hostName"] = spec.Hostname
	}
	for _, k := range sortedKeys(extra) {
		config.ExtraConfig = append(config.ExtraConfig, &types.OptionValue{Key: k, Value: extra[k]})
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	devices = append(devices, scsi)
	for i, gb := range append([]float64{spec.DiskGB}, spec.ExtraDisksGB...) {
		file := spec.Name + ".vmdk"
		if i > 0 {
			file = fmt.Sprintf("%s_%d.vmdk", spec.Name, i)
		}
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), dsRef,
			fmt.Sprintf("%s %s", dsPath, path.Join(dir, file)))
		disk.CapacityInBytes = gbToBytes(gb)
		disk.CapacityInKB = disk.CapacityInBytes / 1024
		devices = append(devices, disk)
	}
	backing, err := object.NewNetwork(b.c, netRef).EthernetCardBackingInfo(b.ctx)
	if err != nil {
		return err
	}
	nic, err := devices.CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return err
	}
	devices = append(devices, nic)
	if config.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
		return err
	}
	res, err := b.wait(folder.CreateVM(b.ctx, config, pool, nil))
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(b.c, res.(types.ManagedObjectReference))
	if template {
		if err := vm.MarkAsTemplate(b.ctx); err != nil {
			return err
		}
		// vCenter lists no template in a resource pool; vcsim leaves it there.
		rp := b.reg.Get(pool.Reference()).(*simulator.ResourcePool)
		simulator.RemoveReference(&rp.Vm, vm.Reference())
		return nil
	}
	fields := object.NewCustomFieldsManager(b.c)
	for _, name := range sortedKeys(spec.Attributes) {
		key, err := b.fieldKey(name)
		if err != nil {
			return err
		}
		if err := fields.Set(b.ctx, vm.Reference(), key, spec.Attributes[name]); err != nil {
			return fmt.Errorf("custom attribute %s: %v", name, err)
		}
	}
	if spec.PowerOn {
		if _, err := b.wait(vm.PowerOn(b.ctx)); err != nil {
			return err
		}
	}
	return nil
}

// prepareStorage makes dir an empty folder for the datastores (the inventory lives in
// memory, so files of an earlier run mean nothing). It refuses to empty a folder that it
// did not create.
func prepareStorage(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, storageMarker)); err != nil {
			return fmt.Errorf("storage_dir %s is not empty and was not made by hopnhat-vcsim", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, storageMarker), nil, 0o600)
}

// ---------------------------------------------------------------- fixes to the simulator

// hopnhat's fixes to govmomi's simulator, made here by putting objects of our own types in
// its registry (the simulator calls methods by name through reflection, and reads the
// properties of a wrapper through its first embedded field). They replace the patch that
// was applied to Debian's govmomi 0.24 tree; of its four fixes, v0.56 has two itself
// (SetField replaces a value; CloneVM_Task copies the source's devices and refuses a name
// already in the folder).

// labPropertyCollector is the simulator's PropertyCollector with Fetch answering an unset
// property as vCenter does: an empty reply (pyVmomi: None). pyVmomi >= 8.0.1 reads every
// lazy attribute (vm.snapshot, task.info...) through Fetch; for an unset property
// govmomi 0.56 answers with its internal RetrievePropertiesEx reply, which pyVmomi fails to
// read (AttributeError, KeyError 'type'). Embedded by value: each session gets its own
// zero instance of the registered type (simulator.Session.Get makes it with reflect.New).
type labPropertyCollector struct {
	simulator.PropertyCollector
}

// fetchBody and fetchResponse encode as the simulator's own (internal) Fetch reply.
type fetchBody struct {
	Res    *fetchResponse `xml:"FetchResponse,omitempty"`
	Fault_ *soap.Fault    `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault,omitempty"`
}

type fetchResponse struct {
	Returnval types.AnyType `xml:"returnval,omitempty,typeattr"`
}

func (b *fetchBody) Fault() *soap.Fault { return b.Fault_ }

// Fetch takes req, of a type internal to govmomi, as any; the simulator's own Fetch is
// called through reflection for the same reason.
func (pc *labPropertyCollector) Fetch(ctx *simulator.Context, req any) soap.HasFault {
	fetch := reflect.ValueOf(&pc.PropertyCollector).MethodByName("Fetch")
	res := fetch.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(req)})[0].Interface().(soap.HasFault)
	if _, unset := res.(*methods.RetrievePropertiesExBody); unset && res.Fault() == nil {
		return &fetchBody{Res: &fetchResponse{}}
	}
	return res
}

// CreateFilter registers the new filter's change handler through filterHandler, which
// breaks a lock-order cycle of govmomi 0.56 (fixed upstream after it, govmomi PR #4109):
// WaitForUpdatesEx holds a filter's lock while it traverses the filter's ContainerView,
// and a new object (a clone, a task) is put in a ContainerView under the view's lock, which
// then takes the filter's lock to flag the change. The lab's hypervisor follows vcsim with
// a filter over a ContainerView, so concurrent provisioning hung the whole simulator.
func (pc *labPropertyCollector) CreateFilter(ctx *simulator.Context, req *types.CreateFilter) soap.HasFault {
	res := pc.PropertyCollector.CreateFilter(ctx, req)
	if body, ok := res.(*methods.CreateFilterBody); ok && body.Res != nil {
		if f, ok := ctx.Session.Get(body.Res.Returnval).(*simulator.PropertyFilter); ok {
			ctx.Map.RemoveHandler(f)
			ctx.Map.AddHandler(filterHandler{f})
		}
	}
	return res
}

// filterHandler hands a PropertyFilter the changes of the object it traverses (its view)
// from a goroutine of its own, so the caller, who holds the view's lock, never waits for
// the filter's lock. The filter only flags that it must collect its objects again.
type filterHandler struct {
	*simulator.PropertyFilter
}

func (h filterHandler) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	ref := obj.Reference()
	for _, set := range h.Spec.ObjectSet {
		if set.Obj == ref && len(set.SelectSet) != 0 {
			own := &simulator.Context{Context: context.Background(), Map: ctx.Map}
			go h.PropertyFilter.UpdateObject(own, obj, changes)
			return
		}
	}
}

// labVMFolder is the simulator's Folder for a datacenter's VM folder, with CreateVM_Task
// (which CloneVM_Task calls too) as vCenter does it:
//   - a folder holds one VM of a name: a second one is refused with DuplicateName (v0.56
//     checks this for CloneVM_Task, not for CreateVM_Task);
//   - a clone gets a new MAC address for each NIC whose address is not manual (v0.56 copies
//     the source's MAC, so every clone of a template had the template's MAC).
//
// Only the datacenters' VM folders are of this type, not folders made in them (the model's
// own, such as a legacy VM's "Legacy/QLVB", made before these fixes are installed, or made
// later): those are the simulator's, where CreateVM_Task takes a name already there
// (CloneVM_Task does refuse it) and a clone keeps its source's MAC, but whose VMs can be
// moved out of them. Creating folders under a VM folder and VMs in those folders works.
// Simulator code that wants the concrete *simulator.Folder fails on the VM folders:
// SearchIndex FindChild and FindByInventoryPath below a VM folder, ImportVApp, CreateVApp,
// RelocateVM or MoveIntoFolder out of one, Destroy of a folder made in one; hopnhat uses
// none of these.
type labVMFolder struct {
	*simulator.Folder
}

// vmNameEscaper escapes a VM name as the simulator does before it names the VM.
var vmNameEscaper = strings.NewReplacer(`%`, `%25`, `/`, `%2f`, `\`, `%5c`)

func (f *labVMFolder) CreateVMTask(ctx *simulator.Context, req *types.CreateVM_Task) soap.HasFault {
	name := vmNameEscaper.Replace(req.Config.Name)
	if e := ctx.Map.FindByName(name, f.ChildEntity); e != nil && name != "" {
		task := simulator.CreateTask(f, "createVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
			return nil, &types.DuplicateName{Name: name, Object: e.Reference()}
		})
		return &methods.CreateVM_TaskBody{Res: &types.CreateVM_TaskResponse{Returnval: task.Run(ctx)}}
	}
	// The simulator runs CloneVM_Task's CreateVM_Task in the clone's context, whose caller
	// is the source VM; its devices are already copies of the source's.
	if ctx.Caller != nil && ctx.Caller.Type == "VirtualMachine" {
		for _, change := range req.Config.DeviceChange {
			spec := change.GetVirtualDeviceConfigSpec()
			if nic, ok := spec.Device.(types.BaseVirtualEthernetCard); ok {
				card := nic.GetVirtualEthernetCard()
				if card.AddressType != string(types.VirtualEthernetCardMacTypeManual) {
					card.MacAddress = "" // the simulator generates one
				}
			}
		}
	}
	return f.Folder.CreateVMTask(ctx, req)
}

// vmRuntimeDefaults gives each new VM the runtime states vCenter reports for a VM without
// fault tolerance or record/replay. govmomi 0.56 leaves both empty while its types now
// always send them, and pyVmomi cannot read an empty enum: vm.runtime and vm.summary
// failed with AttributeError (govmomi 0.24 left them out of the reply). It is called by
// the registry for every object put in it (a simulator.RegisterObject).
type vmRuntimeDefaults struct{}

func (vmRuntimeDefaults) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "HopnhatLab", Value: "vm-runtime-defaults"}
}

func (vmRuntimeDefaults) PutObject(_ *simulator.Context, obj mo.Reference) {
	vm, ok := obj.(*simulator.VirtualMachine)
	if !ok {
		return
	}
	// No lock here: the simulator puts a new VM in the registry while it holds the VM's lock.
	for _, rt := range []*types.VirtualMachineRuntimeInfo{&vm.Runtime, &vm.Summary.Runtime} {
		if rt.FaultToleranceState == "" {
			rt.FaultToleranceState = types.VirtualMachineFaultToleranceStateNotConfigured
		}
		if rt.RecordReplayState == "" {
			rt.RecordReplayState = types.VirtualMachineRecordReplayStateInactive
		}
	}
}

func (vmRuntimeDefaults) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {}

func (vmRuntimeDefaults) RemoveObject(*simulator.Context, types.ManagedObjectReference) {}

// installFixes puts the fixed types in reg in place of the simulator's objects.
func installFixes(reg *simulator.Registry, content types.ServiceContent) error {
	pc := &labPropertyCollector{}
	pc.Self = content.PropertyCollector
	reg.Put(pc)
	root, ok := reg.Get(content.RootFolder).(*simulator.Folder)
	if !ok {
		return errors.New("no root folder")
	}
	for _, ref := range root.ChildEntity {
		dc, ok := reg.Get(ref).(*simulator.Datacenter)
		if !ok {
			continue
		}
		folder, ok := reg.Get(dc.VmFolder).(*simulator.Folder)
		if !ok {
			return fmt.Errorf("%s: VM folder %s is a %T", dc.Name, dc.VmFolder.Value, reg.Get(dc.VmFolder))
		}
		reg.Put(&labVMFolder{folder})
	}
	return nil
}

// ---------------------------------------------------------------- the SOAP front

// soapFront stands before the simulator's SOAP endpoints (/sdk, /sdk/vimService): it counts
// each request by method name and answers a *_Task method only once its task is done.
type soapFront struct {
	reg *simulator.Registry

	mu     sync.Mutex
	counts map[string]int64
}

// taskWaitLimit bounds how long a *_Task reply waits for its task; after that the reply
// goes out with the task still running.
const taskWaitLimit = 5 * time.Minute

// soapMethod returns the name of the first element inside the SOAP Body.
func soapMethod(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if start, ok := tok.(xml.StartElement); ok {
			if inBody {
				return start.Name.Local
			}
			inBody = start.Name.Local == "Body"
		}
	}
}

// taskInReply returns the task a *_TaskResponse names (its returnval of type Task).
func taskInReply(body []byte) (types.ManagedObjectReference, bool) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return types.ManagedObjectReference{}, false
		}
		start, ok := tok.(xml.StartElement)
		if !ok || start.Name.Local != "returnval" {
			continue
		}
		for _, a := range start.Attr {
			if a.Name.Local == "type" && a.Value == "Task" {
				var value string
				if dec.DecodeElement(&value, &start) != nil {
					return types.ManagedObjectReference{}, false
				}
				return types.ManagedObjectReference{Type: "Task", Value: strings.TrimSpace(value)}, true
			}
		}
		return types.ManagedObjectReference{}, false
	}
}

// bufferedReply holds a reply until it may go out.
type bufferedReply struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedReply) Header() http.Header { return b.header }

func (b *bufferedReply) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedReply) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

// waitForTask returns once the simulator's task ref is done, or after taskWaitLimit.
func (f *soapFront) waitForTask(ref types.ManagedObjectReference) {
	task, ok := f.reg.Get(ref).(*simulator.Task)
	if !ok {
		return
	}
	done := make(chan struct{})
	go func() { task.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(taskWaitLimit):
		log.Printf("%s: still running after %s; answered anyway", ref.Value, taskWaitLimit)
	}
}

// wrap counts each SOAP request, then hands it to next. Since govmomi 0.25 the simulator
// runs a task in the background and answers at once with the task running. vCenter does
// too, but vcsim fills info.name with names pyVmomi cannot read ("CloneVm", not
// "CloneVM_Task"), and pyVim.task.WaitForTask fails with AttributeError on a running vcsim
// task. So the reply of a *_Task method waits for its task, as with govmomi 0.24, whose
// tasks were done when their method answered: clients see only finished tasks.
func (f *soapFront) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			http.Error(w, "cannot read request", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		name := soapMethod(body)
		if name != "" {
			f.mu.Lock()
			f.counts[name]++
			f.mu.Unlock()
		}
		if !strings.HasSuffix(name, "_Task") {
			next.ServeHTTP(w, r)
			return
		}
		reply := &bufferedReply{header: w.Header()}
		next.ServeHTTP(reply, r)
		if reply.status == http.StatusOK {
			if ref, ok := taskInReply(reply.body.Bytes()); ok {
				f.waitForTask(ref)
			}
		}
		if reply.status != 0 {
			w.WriteHeader(reply.status)
		}
		_, _ = w.Write(reply.body.Bytes())
	})
}

func (f *soapFront) serveCounts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	f.mu.Lock()
	snapshot := make(map[string]int64, len(f.counts))
	for k, v := range f.counts {
		snapshot[k] = v
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(snapshot)
}

func (f *soapFront) serveReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	f.mu.Lock()
	f.counts = map[string]int64{}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}\n")
}

// ---------------------------------------------------------------- delays

// delays applies delay specs to the model's DelayConfig and remembers the one in force.
type delays struct {
	cfg *simulator.DelayConfig
	mu  sync.Mutex
	cur delaySpec
}

func (d *delays) apply(spec delaySpec) {
	methods := make(map[string]int, len(spec.Methods))
	for k, v := range spec.Methods {
		methods[k] = v
	}
	// The simulator reads these fields on every call without a lock: assign whole values
	// and a fresh map, never change a map it may be reading.
	d.cfg.Delay = spec.DelayMS
	d.cfg.DelayJitter = spec.Jitter
	d.cfg.MethodDelay = methods
	d.mu.Lock()
	d.cur = delaySpec{DelayMS: spec.DelayMS, Jitter: spec.Jitter, Methods: methods}
	d.mu.Unlock()
}

func (d *delays) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	d.mu.Lock()
	cur := d.cur
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cur)
}

func describeDelays(d delaySpec) string {
	var parts []string
	for k, v := range d.Methods {
		parts = append(parts, fmt.Sprintf("%s=%dms", k, v))
	}
	sort.Strings(parts)
	return fmt.Sprintf("delay=%dms jitter=%g methods=[%s]", d.DelayMS, d.Jitter, strings.Join(parts, " "))
}

// ---------------------------------------------------------------- main

func newServer(svc *simulator.Service) (s *simulator.Server, err error) {
	defer func() {
		if r := recover(); r != nil { // the simulator panics when it cannot listen
			err = fmt.Errorf("%v", r)
		}
	}()
	return svc.NewServer(), nil
}

func run(modelFile string) error {
	// Catch the signals first: a SIGHUP during the build must not end the process.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)

	spec, err := readModel(modelFile)
	if err != nil {
		return err
	}
	creds, err := readCredentials(spec.CredentialsFile)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(spec.Listen)
	if err != nil {
		return fmt.Errorf("listen %q: %v", spec.Listen, err)
	}
	cert, err := loadOrCreateCert(spec.TLS.Cert, spec.TLS.Key, host)
	if err != nil {
		return fmt.Errorf("TLS: %v", err)
	}
	_ = os.Remove(spec.ReadyFile)

	storage := spec.StorageDir
	if storage == "" {
		if storage, err = os.MkdirTemp("", "hopnhat-vcsim-"); err != nil {
			return err
		}
		defer os.RemoveAll(storage)
	}
	if err := prepareStorage(storage); err != nil {
		return err
	}

	// An empty vCenter model: no datacenter, host, datastore or VM of vcsim's defaults.
	model := simulator.VPX()
	// The simulator answers with govmomi 0.56's types (vSphere 8 and 9) but says API 6.5,
	// so pyVmomi speaks 6.5 and fails on newer fields it is sent: vm.guest raised
	// AttributeError once a customization had set guest.customizationInfo (API 7.0.2).
	// 8.0.3 is known to every pyVmomi hopnhat accepts (>= 8.0.3); vcsim's -api-version.
	model.ServiceContent.About.ApiVersion = "8.0.3.0"
	model.Datacenter, model.Portgroup, model.Host, model.Cluster = 0, 0, 0, 0
	model.ClusterHost, model.Datastore, model.Machine = 0, 0, 0
	if err := model.Create(); err != nil {
		return err
	}
	defer model.Remove()

	reg := model.Map()
	reg.AddHandler(vmRuntimeDefaults{}) // before any VM is made
	ctx := context.Background()
	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return err
	}
	started := time.Now()
	if err := (&builder{ctx: ctx, c: client, sim: model.Service.Context, reg: reg, storage: storage}).build(spec); err != nil {
		return fmt.Errorf("inventory: %v", err)
	}
	log.Printf("inventory built in %s", time.Since(started).Round(time.Millisecond))
	delay := &delays{cfg: &model.DelayConfig}
	delay.apply(spec.Delays) // after the build, like Model.Create

	if err := installFixes(reg, client.ServiceContent); err != nil {
		return fmt.Errorf("fixes: %v", err)
	}

	front := &soapFront{reg: reg, counts: map[string]int64{}}
	svc := model.Service
	svc.Listen = &url.URL{Host: spec.Listen, User: url.UserPassword(creds.Username, creds.Password)}
	svc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// The SOAP endpoints go through the front: they are registered on a mux of their own
	// first, so NewServer finds the SDK registered and adds no handler of its own for it.
	sdkMux := http.NewServeMux()
	svc.ServeMux = sdkMux
	svc.RegisterSDK(reg, reg.Path+"/vimService")
	mux := http.NewServeMux()
	mux.Handle(reg.Path, front.wrap(sdkMux))
	mux.Handle(reg.Path+"/vimService", front.wrap(sdkMux))
	mux.HandleFunc("/lab/methods", front.serveCounts)
	mux.HandleFunc("/lab/methods/reset", front.serveReset)
	mux.HandleFunc("/lab/delays", delay.serve)
	svc.ServeMux = mux

	server, err := newServer(svc)
	if err != nil {
		return fmt.Errorf("listen %s: %v", spec.Listen, err)
	}

	sdk := url.URL{Scheme: server.URL.Scheme, Host: server.URL.Host, Path: server.URL.Path}
	if err := writeAtomic(spec.ReadyFile, []byte(sdk.String()+"\n"), 0o644); err != nil {
		server.Close()
		return err
	}
	log.Printf("serving %s (%s)", sdk.String(), describeDelays(spec.Delays))

	for sig := range signals {
		if sig == syscall.SIGHUP {
			fresh, err := readModel(modelFile)
			if err != nil {
				log.Printf("SIGHUP: model not reloaded: %v", err)
				continue
			}
			delay.apply(fresh.Delays)
			log.Printf("SIGHUP: %s", describeDelays(fresh.Delays))
			continue
		}
		log.Printf("%s: stopping", sig)
		break
	}
	_ = os.Remove(spec.ReadyFile)
	done := make(chan struct{})
	go func() { server.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		log.Printf("requests still open after 5 s; exiting anyway")
	}
	return nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("hopnhat-vcsim ")
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hopnhat-vcsim MODEL.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}
