pub fn probe() {
    let _ = glommio::LocalExecutorBuilder::default();
}
