# The calculator mesh on Nomad: five operator services (add, sub, mul, div in C++, mod
# in Python; two instances each) and the frontend (one), each instance beside its coromesh-sidecar in one task group, all on
# the raw_exec driver with dynamic ports. ops/nomad/run.sh submits it; by hand:
#
#   nomad job run -var coromesh_bin=$PWD/build/bin -var consul_addr=127.0.0.1:8500 \
#     ops/nomad/calculator.nomad.hcl
#
# Who registers what in Consul: the programs themselves, as outside Nomad. Each
# service registers its instance (with the `metrics` tag and meta Prometheus reads, and
# its /health check), and each sidecar (--register) registers its connect-proxy with
# the upstreams, its checks and an alias of its service's check. A Nomad `service`
# block with provider "consul" would register the same instances a second time, and
# could not describe our sidecar at all (Nomad's `connect` block means Nomad's own
# Envoy sidecar in a bridge network). The `service` blocks below therefore use
# provider "nomad": Nomad's own catalog, where their checks tell Nomad when an
# allocation is healthy (deployments wait for it) and restart a task whose /health
# fails. Consul sees every instance once.
#
# Addresses: every listener is on the client's address for that port (NOMAD_IP_<label>),
# which on `nomad agent -dev` is 127.0.0.1. On a cluster that should admit only mTLS
# between nodes, bind the services to loopback (--bind=127.0.0.1 and the sidecar's
# --service-addr) so that only the sidecars' public ports face the network.
#
# Ports (NOMAD_PORT_<label>, NOMAD_IP_<label> in every task of the group):
#   http      the service (coromesh binaries read NOMAD_PORT_http/NOMAD_IP_http)
#   public    the sidecar's mTLS listener, registered in Consul as the service's proxy
#   admin     the sidecar's own /health and /metrics (--nomad-port-label=admin)
#   up_<op>   the frontend's sidecar's loopback listener for <op>-svc

variable "coromesh_bin" {
  type        = string
  description = "Absolute path of the directory with add-svc, ..., mod-svc, frontend and coromesh-sidecar (a build's bin/)."
}

variable "consul_addr" {
  type        = string
  default     = "127.0.0.1:8500"
  description = "HTTP address of the Consul agent on the Nomad client."
}

variable "frontend_port" {
  type        = number
  default     = 0
  description = "Static port of the frontend's HTTP listener; 0 lets Nomad pick one."
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

locals {
  operations = ["add", "sub", "mul", "div", "mod"]
  # Group name (= Consul service name) => how many instances and which operator
  # services it calls through its sidecar.
  groups = merge(
    { for op in local.operations : "${op}-svc" => { count = 2, upstreams = [] } },
    { frontend = { count = 1, upstreams = local.operations } },
  )
  # Stop as the programs expect: SIGTERM, then their --shutdown-grace (10s) to drain.
  kill_timeout = "15s"
}

job "calculator" {
  datacenters = var.datacenters
  type        = "service"

  update {
    health_check     = "checks"
    min_healthy_time = "2s"
    healthy_deadline = "2m"
  }

  dynamic "group" {
    for_each = local.groups
    labels   = [group.key]

    content {
      count = group.value.count

      network {
        port "http" {
          # `static = 0` is a dynamic port.
          static = group.key == "frontend" ? var.frontend_port : 0
        }
        port "public" {}
        port "admin" {}
        dynamic "port" {
          for_each = group.value.upstreams
          labels   = ["up_${port.value}"]
          content {}
        }
      }

      restart {
        attempts = 3
        delay    = "2s"
        interval = "1m"
        mode     = "fail"
      }

      # The service's /health and the sidecar's (on its admin port), in Nomad's catalog.
      dynamic "service" {
        for_each = [
          { name = group.key, port = "http", task = "service" },
          { name = "${group.key}-sidecar-proxy", port = "admin", task = "sidecar" },
        ]
        content {
          provider = "nomad"
          name     = service.value.name
          port     = service.value.port
          task     = service.value.task
          check {
            type     = "http"
            path     = "/health"
            interval = "5s"
            timeout  = "2s"
            check_restart {
              limit = 3
              grace = "10s"
            }
          }
        }
      }

      # Started before the service (as Nomad's own Connect sidecars are), so that the
      # frontend's upstream listeners exist by the time it takes requests; stopped
      # after it.
      task "sidecar" {
        driver = "raw_exec"
        lifecycle {
          hook    = "prestart"
          sidecar = true
        }
        config {
          command = "${var.coromesh_bin}/coromesh-sidecar"
          args = concat([
            "--service=${group.key}",
            "--service-id=${group.key}-$${NOMAD_SHORT_ALLOC_ID}",
            "--instance-id=${group.key}-$${NOMAD_SHORT_ALLOC_ID}-sidecar-proxy",
            "--service-addr=$${NOMAD_IP_http}:$${NOMAD_PORT_http}",
            "--listen=$${NOMAD_IP_public}:$${NOMAD_PORT_public}",
            "--register",
            # Its admin port; without this it would read NOMAD_PORT_http, the service's.
            "--nomad-port-label=admin",
            "--consul=${var.consul_addr}",
            ], [
            for op in group.value.upstreams : "--upstream=${op}-svc:$${NOMAD_PORT_up_${op}}:http"
          ])
        }
        kill_signal  = "SIGTERM"
        kill_timeout = local.kill_timeout
        resources {
          cpu    = 100
          memory = 64
        }
      }

      task "service" {
        driver = "raw_exec"
        config {
          command = "${var.coromesh_bin}/${group.key}"
          args = concat([
            "--instance-id=${group.key}-$${NOMAD_SHORT_ALLOC_ID}",
            "--consul=${var.consul_addr}",
            ], length(group.value.upstreams) == 0 ? [] : [
            "--upstreams=${join(",", [for op in group.value.upstreams : "${op}=127.0.0.1:$${NOMAD_PORT_up_${op}}"])}"
          ])
        }
        kill_signal  = "SIGTERM"
        kill_timeout = local.kill_timeout
        resources {
          cpu    = 100
          memory = 64
        }
      }
    }
  }
}
