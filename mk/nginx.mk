# roles/nginx's configuration, run on loopback in front of a test cluster (tests/nginx). Debian's
# nginx, its Lua module and their libraries are unpacked into .venv/nginx (apt-get download,
# dpkg-deb -x) when not there yet: nothing is installed system-wide, no service is started.
NGINX_LOCAL := $(VENV)/nginx
NGINX_PACKAGES := nginx nginx-common libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core \
	lua-resty-lrucache libluajit2-5.1-2 libluajit2-5.1-common libpcre3

TEST_TARGETS += test-nginx

.PHONY: test-nginx

$(NGINX_LOCAL)/usr/sbin/nginx:
	@mkdir -p $(NGINX_LOCAL)/debs
	@cd $(NGINX_LOCAL)/debs && { apt-get download -qq $(NGINX_PACKAGES) 2>/dev/null || \
		{ apt-get update -qq && apt-get download -qq $(NGINX_PACKAGES); }; } && \
		for deb in *.deb; do dpkg-deb -x "$$deb" ..; done && rm -f *.deb
	@test -x $@

## roles/nginx's nginx.conf (rendered by Ansible, checked with nginx -t) in front of a
## three-node loopback cluster: Lua checks, routing, a leader kill, reload, the JSON 503.
test-nginx: $(VENV)/.deploy-installed $(NGINX_LOCAL)/usr/sbin/nginx
	$(PY) -m pytest -q -p no:cacheprovider -s tests/nginx
