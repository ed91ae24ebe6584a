// Command hopnhat-vcsim is the lab's vCenter: govmomi 0.24's vcsim serving an inventory
// built from a JSON model file (the only argument; secrets never travel on argv).
//
// The model file names the listen address, the TLS certificate and key (generated when
// missing), the credentials file, the ready file, method delays and the inventory:
// datacenters with clusters of hosts, datastores, port groups, templates and plain VMs.
// See orchestrator/lab/vcsim.py for the format.
//
// Signals: SIGHUP re-reads the model file and applies its "delays" only; SIGTERM and
// SIGINT stop the server and exit 0.
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
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
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
	raw, err := ioutil.ReadFile(file)
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
		}
	}
	return nil
}

func readCredentials(file string) (*credentials, error) {
	raw, err := ioutil.ReadFile(file)
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
	tmp, err := ioutil.TempFile(filepath.Dir(file), "."+filepath.Base(file)+".*")
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
	storage string
}

type dcState struct {
	spec     datacenterSpec
	dc       *object.Datacenter
	folders  *object.DatacenterFolders
	clusters map[string]*object.ClusterComputeResource
	hosts    []types.ManagedObjectReference
	networks map[string]types.ManagedObjectReference
	stores   map[string]types.ManagedObjectReference
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
			clusters: map[string]*object.ClusterComputeResource{},
			networks: map[string]types.ManagedObjectReference{},
			stores:   map[string]types.ManagedObjectReference{},
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
			setDatastoreSpace(st.stores[ds.Name], ds)
		}
		removeDefaultNetwork(st)
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
		h := simulator.Map.Get(ref).(*simulator.HostSystem)
		setHostHardware(h, spec)
		hosts = append(hosts, h)
		st.hosts = append(st.hosts, ref)
	}
	// vcsim sums per-host MHz (not cores x MHz) and memory in bytes for effectiveMemory:
	// recompute the summary as vCenter reports it.
	cl := simulator.Map.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
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
	dc := simulator.Map.Get(st.dc.Reference()).(*simulator.Datacenter)
	var refs []types.ManagedObjectReference
	for _, name := range names {
		e := simulator.Map.FindByName(name, dc.Network)
		if e == nil {
			return fmt.Errorf("%s: network not created", name)
		}
		st.networks[name] = e.Reference()
		refs = append(refs, e.Reference())
	}
	for _, ref := range st.hosts {
		h := simulator.Map.Get(ref).(*simulator.HostSystem)
		hns := simulator.Map.Get(*h.ConfigManager.NetworkSystem).(*simulator.HostNetworkSystem)
		// vcsim's HostNetworkSystem lists a vSwitch's port groups by name (its Add/RemovePortGroup
		// look them up so); host.config.network lists them by key, as ESXi does.
		hns.NetworkInfo = withPortgroups(hns.NetworkInfo, specs, false)
		if h.Config != nil && h.Config.Network != nil {
			h.Config.Network = withPortgroups(h.Config.Network, specs, true)
		}
		h.Network = append([]types.ManagedObjectReference(nil), refs...)
	}
	for _, cluster := range st.clusters {
		cl := simulator.Map.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
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
func removeDefaultNetwork(st *dcState) {
	dc := simulator.Map.Get(st.dc.Reference()).(*simulator.Datacenter)
	for _, ref := range append([]types.ManagedObjectReference(nil), dc.Network...) {
		n, ok := simulator.Map.Get(ref).(*mo.Network)
		if !ok || n.Name != "VM Network" {
			continue
		}
		if _, ours := st.networks[n.Name]; ours {
			continue
		}
		folder := simulator.Map.Get(dc.NetworkFolder).(*simulator.Folder)
		simulator.RemoveReference(&folder.ChildEntity, ref)
		simulator.RemoveReference(&dc.Network, ref)
		for _, h := range st.hosts {
			host := simulator.Map.Get(h).(*simulator.HostSystem)
			simulator.RemoveReference(&host.Network, ref)
		}
		for _, cluster := range st.clusters {
			cl := simulator.Map.Get(cluster.Reference()).(*simulator.ClusterComputeResource)
			simulator.RemoveReference(&cl.Network, ref)
		}
		simulator.Map.Remove(ref)
	}
}

// datastore creates a local datastore backed by dir, mounted on every host of the datacenter.
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
		if i == 0 {
			ds, err := dss.CreateLocalDatastore(b.ctx, spec.Name, dir)
			if err != nil {
				return err
			}
			ref = ds.Reference()
			continue
		}
		// vcsim's CreateLocalDatastore makes a new Datastore object per host (the last one
		// wins, mounted on that host only): mount the first one on the other hosts instead.
		mountDatastore(ref, h, simulator.Map.Get(dss.Reference()).(*simulator.HostDatastoreSystem))
	}
	st.stores[spec.Name] = ref
	setDatastoreSpace(ref, spec)
	return nil
}

func mountDatastore(ref, hostRef types.ManagedObjectReference, dss *simulator.HostDatastoreSystem) {
	ds := simulator.Map.Get(ref).(*simulator.Datastore)
	host := simulator.Map.Get(hostRef).(*simulator.HostSystem)
	ds.Host = append(ds.Host, types.DatastoreHostMount{
		Key: hostRef,
		MountInfo: types.HostMountInfo{
			AccessMode: string(types.HostMountModeReadWrite),
			Mounted:    types.NewBool(true),
			Accessible: types.NewBool(true),
		},
	})
	dss.Datastore = append(dss.Datastore, ref)
	host.Datastore = dss.Datastore
	var parent *mo.ComputeResource
	switch p := simulator.Map.Get(*host.Parent).(type) {
	case *simulator.ClusterComputeResource:
		parent = &p.ComputeResource
	case *mo.ComputeResource:
		parent = p
	}
	if parent != nil && simulator.FindReference(parent.Datastore, ref) == nil {
		parent.Datastore = append(parent.Datastore, ref)
	}
}

// gbToBytes converts GiB (the model's "GB", possibly fractional) to bytes.
func gbToBytes(gb float64) int64 {
	return int64(gb * float64(gib))
}

func setDatastoreSpace(ref types.ManagedObjectReference, spec datastoreSpec) {
	ds := simulator.Map.Get(ref).(*simulator.Datastore)
	ds.Summary.Capacity = gbToBytes(spec.CapacityGB)
	ds.Summary.FreeSpace = gbToBytes(spec.FreeGB)
	info := ds.Info.GetDatastoreInfo()
	info.FreeSpace = ds.Summary.FreeSpace
	info.MaxFileSize = ds.Summary.FreeSpace
	info.MaxMemoryFileSize = ds.Summary.FreeSpace
}

// vm creates a powered-off VM with one disk and one NIC in the named cluster's root pool;
// a template is then marked as template, a plain VM powered on when asked.
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
	config := types.VirtualMachineConfigSpec{
		Name:     spec.Name,
		GuestId:  guest,
		NumCPUs:  cpu,
		MemoryMB: mem,
		Files:    &types.VirtualMachineFileInfo{VmPathName: dsPath},
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), dsRef,
		fmt.Sprintf("%s %s", dsPath, path.Join(spec.Name, spec.Name+".vmdk")))
	disk.CapacityInBytes = gbToBytes(spec.DiskGB)
	disk.CapacityInKB = disk.CapacityInBytes / 1024
	devices = append(devices, disk)
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
	res, err := b.wait(st.folders.VmFolder.CreateVM(b.ctx, config, pool, nil))
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(b.c, res.(types.ManagedObjectReference))
	if template {
		if err := vm.MarkAsTemplate(b.ctx); err != nil {
			return err
		}
		// vCenter lists no template in a resource pool; vcsim 0.24 leaves it there.
		rp := simulator.Map.Get(pool.Reference()).(*simulator.ResourcePool)
		simulator.RemoveReference(&rp.Vm, vm.Reference())
		return nil
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
	if entries, err := ioutil.ReadDir(dir); err == nil && len(entries) > 0 {
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
	return ioutil.WriteFile(filepath.Join(dir, storageMarker), nil, 0o600)
}

// ---------------------------------------------------------------- method counts

type methodCounter struct {
	mu     sync.Mutex
	counts map[string]int64
}

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

// wrap counts each SOAP request to the /sdk endpoints, then hands it to next.
func (m *methodCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			body, err := ioutil.ReadAll(r.Body)
			_ = r.Body.Close()
			if err != nil {
				http.Error(w, "cannot read request", http.StatusBadRequest)
				return
			}
			if name := soapMethod(body); name != "" {
				m.mu.Lock()
				m.counts[name]++
				m.mu.Unlock()
			}
			r.Body = ioutil.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

func (m *methodCounter) serveCounts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	m.mu.Lock()
	snapshot := make(map[string]int64, len(m.counts))
	for k, v := range m.counts {
		snapshot[k] = v
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(snapshot)
}

func (m *methodCounter) serveReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	m.mu.Lock()
	m.counts = map[string]int64{}
	m.mu.Unlock()
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
		if storage, err = ioutil.TempDir("", "hopnhat-vcsim-"); err != nil {
			return err
		}
		defer os.RemoveAll(storage)
	}
	if err := prepareStorage(storage); err != nil {
		return err
	}

	// An empty vCenter model: no datacenter, host, datastore or VM of vcsim's defaults.
	model := simulator.VPX()
	model.Datacenter, model.Portgroup, model.Host, model.Cluster = 0, 0, 0, 0
	model.ClusterHost, model.Datastore, model.Machine = 0, 0, 0
	if err := model.Create(); err != nil {
		return err
	}
	defer model.Remove()

	ctx := context.Background()
	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return err
	}
	started := time.Now()
	if err := (&builder{ctx: ctx, c: client, storage: storage}).build(spec); err != nil {
		return fmt.Errorf("inventory: %v", err)
	}
	log.Printf("inventory built in %s", time.Since(started).Round(time.Millisecond))
	delay := &delays{cfg: &model.DelayConfig}
	delay.apply(spec.Delays) // after the build, like Model.Create

	counter := &methodCounter{counts: map[string]int64{}}
	svc := model.Service
	svc.Listen = &url.URL{Host: spec.Listen, User: url.UserPassword(creds.Username, creds.Password)}
	svc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	svc.ServeMux = http.NewServeMux()
	svc.ServeMux.HandleFunc("/lab/methods", counter.serveCounts)
	svc.ServeMux.HandleFunc("/lab/methods/reset", counter.serveReset)
	svc.ServeMux.HandleFunc("/lab/delays", delay.serve)

	server, err := newServer(svc)
	if err != nil {
		return fmt.Errorf("listen %s: %v", spec.Listen, err)
	}
	// NewServer starts serving at once with its ServeMux as handler. Wrap it to count SOAP
	// methods; CloseClientConnections takes the server's lock, which every new connection
	// takes too before it is served, so they all see the wrapped handler.
	server.Config.Handler = counter.wrap(server.Config.Handler)
	server.CloseClientConnections()

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
